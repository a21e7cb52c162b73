//! Raw serde types: the shape of `gateway.toml`, nothing checked beyond TOML
//! types. Every field is optional and spanned so that validation can say
//! where a problem is and report missing keys itself. Each table is
//! deserialized on its own (sub-tables such as `[server.tls]` too), so a type
//! error in one table does not hide problems in the others.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

/// A spanned string.
pub type Str = Spanned<String>;

/// A value given as one string or a list of strings.
#[derive(Debug, Clone)]
pub struct OneOrMany(pub Vec<Str>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Str>()? {
                    items.push(item);
                }
                Ok(OneOrMany(items))
            }
            // A single string arrives here when the value is not a list; the
            // span is then the whole value's, which the caller supplies.
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![Spanned::new(0..0, v.to_string())]))
            }
        }
        d.deserialize_any(V)
    }
}

impl OneOrMany {
    /// The items; a single string gets the span of the whole value.
    pub fn items(v: &Spanned<OneOrMany>) -> Vec<Str> {
        v.get_ref()
            .0
            .iter()
            .map(|s| {
                if s.span() == (0..0) {
                    Spanned::new(v.span(), s.get_ref().clone())
                } else {
                    s.clone()
                }
            })
            .collect()
    }
}

/// A table of string parameters (`auth_params`, `logout_params`), in file
/// order of deserialization.
#[derive(Debug, Clone, Default)]
pub struct Pairs(pub Vec<(String, Str)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut items = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Str>()? {
                    items.push((k, v));
                }
                Ok(Pairs(items))
            }
        }
        d.deserialize_map(V)
    }
}

/// `[server]` (its `tls` sub-table is deserialized separately).
#[derive(Debug, Default, serde::Deserialize)]
pub struct RawServer {
    pub listen: Option<Spanned<OneOrMany>>,
    pub public_url: Option<Spanned<OneOrMany>>,
    pub admin_listen: Option<Str>,
    pub admin_token: Option<Str>,
    pub admin_token_file: Option<Str>,
    pub trusted_proxies: Option<Spanned<Vec<Str>>>,
    pub allow_insecure_http: Option<Spanned<bool>>,
    pub header_read_timeout: Option<Str>,
    pub max_header_bytes: Option<Spanned<i64>>,
    pub shutdown_timeout: Option<Str>,
    pub workers: Option<Spanned<i64>>,
    pub idle_timeout: Option<Str>,
    pub max_connections: Option<Spanned<i64>>,
}

/// `[server.tls]`
#[derive(Debug, Default, serde::Deserialize)]
pub struct RawTls {
    pub cert: Option<Str>,
    pub key: Option<Str>,
}

/// `[oidc]`
#[derive(Debug, Default, serde::Deserialize)]
pub struct RawOidc {
    pub issuer: Option<Str>,
    pub client_id: Option<Str>,
    pub client_secret: Option<Str>,
    pub client_secret_file: Option<Str>,
    pub scopes: Option<Spanned<Vec<Str>>>,
    pub auth_params: Option<Spanned<Pairs>>,
    pub end_session_endpoint: Option<Str>,
    pub logout_params: Option<Spanned<Pairs>>,
    pub frontchannel_frame_ancestors: Option<Spanned<Vec<Str>>>,
    pub backchannel_require_exp: Option<Spanned<bool>>,
}

/// `[session]` (its `redis` sub-table is deserialized separately).
#[derive(Debug, Default, serde::Deserialize)]
pub struct RawSession {
    pub secret: Option<Spanned<OneOrMany>>,
    pub secret_file: Option<Str>,
    pub cookie_name: Option<Str>,
    pub cookie_domain: Option<Str>,
    pub cookie_samesite: Option<Str>,
    pub persistent: Option<Spanned<bool>>,
    pub idle_timeout: Option<Str>,
    pub max_lifetime: Option<Str>,
    pub store: Option<Str>,
}

/// `[session.redis]`
#[derive(Debug, Default, serde::Deserialize)]
pub struct RawRedis {
    pub url: Option<Str>,
    pub url_file: Option<Str>,
    pub sentinels: Option<Spanned<Vec<Str>>>,
    pub sentinel_master: Option<Str>,
    pub cluster: Option<Spanned<Vec<Str>>>,
    pub ca_file: Option<Str>,
    pub cache_ttl: Option<Str>,
}

/// One `[[route]]`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct RawRoute {
    pub prefix: Option<Str>,
    pub host: Option<Str>,
    pub upstream: Option<Str>,
    pub auth: Option<Str>,
    pub allow_groups: Option<Spanned<Vec<Str>>>,
    pub allow_emails: Option<Spanned<Vec<Str>>>,
    pub allow_email_domains: Option<Spanned<Vec<Str>>>,
    pub connect_timeout: Option<Str>,
    pub timeout: Option<Str>,
}

/// `[headers]`
#[derive(Debug, Default, serde::Deserialize)]
pub struct RawHeaders {
    pub user: Option<Str>,
    pub email: Option<Str>,
    pub require_verified_email: Option<Spanned<bool>>,
    pub preferred_username: Option<Str>,
    pub groups: Option<Str>,
    pub access_token: Option<Spanned<bool>>,
    pub authorization: Option<Spanned<bool>>,
    pub jwt_assertion: Option<Str>,
    pub jwt_signing_key_file: Option<Str>,
}

/// `[telemetry]`
#[derive(Debug, Default, serde::Deserialize)]
pub struct RawTelemetry {
    pub otlp_endpoint: Option<Str>,
    pub service_name: Option<Str>,
    pub sample_ratio: Option<Spanned<f64>>,
}

/// `[logout]`
#[derive(Debug, Default, serde::Deserialize)]
pub struct RawLogout {
    pub path: Option<Str>,
    pub mode: Option<Str>,
    pub allowed_modes: Option<Spanned<Vec<Str>>>,
    pub default_return_to: Option<Str>,
    pub allowed_return_to: Option<Spanned<Vec<Str>>>,
    pub revoke_tokens: Option<Spanned<bool>>,
    pub clear_site_data: Option<Spanned<Vec<Str>>>,
    pub silent_timeout: Option<Str>,
}

/// The top-level tables.
pub const SECTIONS: &[&str] = &[
    "server",
    "oidc",
    "session",
    "route",
    "headers",
    "logout",
    "telemetry",
];

/// The keys a struct accepts, as serde sees them (so the list cannot drift
/// from the struct).
pub fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut capture = Capture(&[]);
    let _ = T::deserialize(&mut capture);
    capture.0
}

/// A deserializer that only records the field list of a struct.
struct Capture(&'static [&'static str]);

impl<'de> Deserializer<'de> for &mut Capture {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = fields;
        Err(de::Error::custom("captured"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_lists_struct_keys() {
        let keys = field_names::<RawTls>();
        assert_eq!(keys, &["cert", "key"]);
        assert!(field_names::<RawServer>().contains(&"public_url"));
    }
}
