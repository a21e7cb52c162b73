//! The RP-initiated logout URL (OpenID Connect RP-Initiated Logout 1.0):
//! the IdP's end-session endpoint with `id_token_hint`, `client_id`,
//! `post_logout_redirect_uri`, `state` and the configured `logout_params`.

use url::Url;

use super::OidcClient;

impl OidcClient {
    /// The URL to send the browser to so the IdP ends its session, or
    /// `None` when no end-session endpoint is known (neither configured nor
    /// discovered): then the caller goes straight to the final destination.
    /// The configured override works even while the IdP is unreachable.
    /// `id_token_hint` is omitted when there is no session.
    pub fn end_session_url(
        &self,
        id_token_hint: Option<&str>,
        post_logout_redirect_uri: &Url,
        state: &str,
    ) -> Option<Url> {
        let mut url = match self.provider().metadata() {
            Some(meta) => meta.end_session_endpoint.clone(),
            None => self.inner.end_session_override.clone(),
        }?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(hint) = id_token_hint {
                q.append_pair("id_token_hint", hint);
            }
            q.append_pair("client_id", self.client_id());
            q.append_pair(
                "post_logout_redirect_uri",
                post_logout_redirect_uri.as_str(),
            );
            q.append_pair("state", state);
            for (name, value) in &self.inner.logout_params {
                q.append_pair(name, value);
            }
        }
        Some(url)
    }
}
