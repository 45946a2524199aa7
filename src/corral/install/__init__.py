"""`corral up`: Rancher's HA install from RKE's cluster file.

cluster file (RKE's shape) → `model`/`validate` → `DesiredCluster` (`desired`) → pure `plan`
against the recorded state → apply through a provider (`local` or `ssh`) → state file,
kubeconfig and load-balancer configurations beside the cluster file.
"""
