//! `POST /.portcullis/backchannel-logout`: OpenID Connect Back-Channel
//! Logout 1.0 receiver. (Being built.)

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::context::Ctx;
use crate::pages::{self, Body};

/// Handles a logout token from the IdP.
pub async fn handle(_ctx: &Ctx<'_>, _req: Request<Incoming>) -> Response<Body> {
    pages::json(
        StatusCode::NOT_IMPLEMENTED,
        &serde_json::json!({"error": "not_implemented", "error_description": "back-channel logout is not available yet"}),
    )
}
