"""`bench/lb_vs_nginx`: corral lb against NGINX (Rancher's example configuration and tuned)."""
