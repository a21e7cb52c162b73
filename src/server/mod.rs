//! Listeners: TCP and TLS accept loops, HTTP/1.1 and HTTP/2, graceful shutdown.
