"""Zone DNS: `<service>.mesh` answered with the service's VIP (see answers.py and server.py)."""
