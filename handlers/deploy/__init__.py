"""Deploy and rollback: plans, strategies (kubernetes, argocd, argo-rollouts), apply, wait,
revert."""
