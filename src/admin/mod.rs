//! The admin listener: `/healthz`, `/readyz`, `/metrics` and the admin API.
