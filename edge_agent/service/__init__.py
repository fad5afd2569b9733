"""The process's contract with its service manager: systemd notify (`notify`), a watchdog that pings
only while the loop answers and the pipeline moves (`watchdog`, `looplag`), and the container
health check (`healthcheck`)."""
