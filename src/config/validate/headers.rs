//! `[headers]`: the names of the identity headers sent upstream, and which
//! tokens are forwarded.
//!
//! Why some rules exist: an identity header may not be a header the gateway
//! manages itself (`Host`, `Cookie`, hop-by-hop headers, `X-Forwarded-For`,
//! …), and two identity values may not share a header; either would let one
//! value overwrite another on the way upstream. An empty name disables a
//! header.

use toml::Spanned;

use super::V;
use super::table::Section;
use crate::config::model::*;
use crate::config::raw::*;

impl V<'_> {
    /// `[headers]`; an absent section means every default.
    pub(super) fn headers(&mut self, s: Section<RawHeaders>) -> Option<HeadersConfig> {
        let t = match s {
            Section::Broken => return None,
            Section::Absent => None,
            Section::Read(t) => Some(t),
        };
        let empty = RawHeaders::default();
        let r = t.as_ref().map(|t| &t.raw).unwrap_or(&empty);
        let mut seen: Vec<http::HeaderName> = Vec::new();
        let mut ok = true;
        let mut header = |this: &mut Self,
                          v: &Option<Str>,
                          key: &str,
                          default: &str|
         -> Option<http::HeaderName> {
            let (raw, span) = match v {
                None => (default.to_string(), None),
                Some(s) if s.get_ref().is_empty() => return None,
                Some(s) => (s.get_ref().clone(), Some(s.span())),
            };
            let name = match http::HeaderName::from_bytes(raw.as_bytes()) {
                Ok(n) => n,
                Err(_) => {
                    this.sink.error(
                        &span.unwrap_or(0..0),
                        format!("invalid header name `{raw}` for {key}"),
                    );
                    ok = false;
                    return None;
                }
            };
            const RESERVED: &[&str] = &[
                "host",
                "cookie",
                "set-cookie",
                "authorization",
                "proxy-authorization",
                "content-length",
                "content-type",
                "transfer-encoding",
                "connection",
                "upgrade",
                "te",
                "trailer",
                "keep-alive",
                "forwarded",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
                "x-real-ip",
                "x-forwarded-access-token",
            ];
            if RESERVED.contains(&name.as_str()) {
                this.sink.error(
                    &span.clone().unwrap_or(0..0),
                    format!("{key} cannot be `{raw}`: the gateway manages that header itself"),
                );
                ok = false;
                return None;
            }
            if seen.contains(&name) {
                this.sink.error(
                    &span.unwrap_or(0..0),
                    format!("header `{raw}` is used for two identity values"),
                );
                ok = false;
                return None;
            }
            seen.push(name.clone());
            Some(name)
        };
        let user = header(self, &r.user, "user", DEFAULT_USER_HEADER);
        let email = header(self, &r.email, "email", DEFAULT_EMAIL_HEADER);
        let preferred_username = header(
            self,
            &r.preferred_username,
            "preferred_username",
            DEFAULT_PREFERRED_USERNAME_HEADER,
        );
        let groups = header(self, &r.groups, "groups", DEFAULT_GROUPS_HEADER);
        // Off unless named: an upstream that does not verify it gains nothing.
        let jwt_assertion = match &r.jwt_assertion {
            Some(v) => header(self, &Some(v.clone()), "jwt_assertion", ""),
            None => None,
        };
        let jwt_signing_key = self.jwt_signing_key(r.jwt_signing_key_file.as_ref());
        let flag =
            |b: &Option<Spanned<bool>>, default: bool| b.as_ref().map_or(default, |b| *b.get_ref());
        if !ok {
            return None;
        }
        Some(HeadersConfig {
            user,
            email,
            require_verified_email: flag(&r.require_verified_email, true),
            preferred_username,
            groups,
            access_token: flag(&r.access_token, false),
            authorization: flag(&r.authorization, false),
            jwt_assertion,
            jwt_signing_key: jwt_signing_key?,
        })
    }

    /// Reads and checks `jwt_signing_key_file`: a PKCS#8 PEM P-256 key, so
    /// a key ES256 cannot use is caught by `check`, not at the first request.
    fn jwt_signing_key(&mut self, file: Option<&Str>) -> Option<Option<Secret>> {
        let Some(f) = file.filter(|f| !f.get_ref().is_empty()) else {
            return Some(None);
        };
        let pem = self.read_secret_file("jwt_signing_key_file", f)?;
        let usable = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).and_then(|key| {
            jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::ES256)
        });
        if usable.is_err() {
            self.sink.error(
                &f.span(),
                "jwt_signing_key_file must hold a P-256 private key in PKCS#8 PEM \
                 (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`)",
            );
            return None;
        }
        Some(Some(Secret::new(pem)))
    }
}
