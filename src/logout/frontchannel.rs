//! `GET /.portcullis/frontchannel-logout`: OpenID Connect Front-Channel
//! Logout 1.0 receiver. (Being built.)

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::context::Ctx;
use crate::pages::{self, Body};

/// Handles a front-channel logout request.
pub async fn handle(ctx: &Ctx<'_>, _req: Request<Incoming>) -> Response<Body> {
    pages::error(
        ctx.kind,
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "Front-channel logout is not available yet.",
    )
}
