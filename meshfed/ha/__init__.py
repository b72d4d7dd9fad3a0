"""Running a control plane as several replicas: leader election for singleton jobs
(`leader`: the global's jobs, a zone's KDS client) and the lease options (`options`)."""
