//! A route layout that only looks safe: a session route followed by a
//! broader `auth = "none"` route. Matching is exact and case-sensitive, so
//! `/ADMIN/x` or `/admin.json` miss `/admin/` and fall through to the open
//! route; an app that matches paths loosely then serves them without a
//! session. The safe layout protects `/` and opens the public prefixes.

use super::model::{AuthMode, Route};

/// The earlier session route that `route` (open, and broader) follows, if
/// any: `check` warns about it.
pub fn shadowed_session_route<'a>(earlier: &'a [Route], route: &Route) -> Option<&'a Route> {
    if route.auth != AuthMode::None {
        return None;
    }
    earlier.iter().find(|r| {
        r.auth == AuthMode::Session
            && r.prefix != route.prefix
            && r.prefix.starts_with(&route.prefix)
            && (route.host.is_none() || route.host == r.host)
    })
}

/// The warning's text.
pub fn warning(session: &Route) -> String {
    format!(
        "this open route comes after the session route #{} ({}) and is broader: requests that miss it \
         only by case or suffix (e.g. {}) reach the upstream without a session; protect \"/\" and open \
         the public prefixes instead",
        session.index + 1,
        session.prefix,
        example(&session.prefix),
    )
}

fn example(prefix: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    let upper = prefix.to_ascii_uppercase();
    if upper != prefix {
        format!("{upper}/x")
    } else {
        format!("{prefix}.json")
    }
}
