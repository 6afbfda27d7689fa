"""The status vocabulary of a run (docs/science.md#5-budgets-and-convergence).

converged = met the stopping rule (the only runs that are results), max_epochs = the budget
ran out first, diverged = the loss or a parameter became non-finite or a training loss passed
the divergence bound 10 x ln(n_classes) (awbench.training.run.divergence_reason), failed = an
exception.
"""

CONVERGED = "converged"
MAX_EPOCHS = "max_epochs"
DIVERGED = "diverged"
FAILED = "failed"

STATUSES = (CONVERGED, MAX_EPOCHS, DIVERGED, FAILED)
DONE_STATUSES = (CONVERGED, MAX_EPOCHS)  # trained and analysed: drawn (unconverged hollow)
FAILED_STATUSES = (DIVERGED, FAILED)
