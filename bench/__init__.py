"""`bench/lb_vs_nginx`: corral lb against NGINX (seeds' config and tuned) on one machine."""
