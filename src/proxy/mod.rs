//! Forwarding a request to its upstream and the response back.
