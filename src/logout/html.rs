//! The HTML the logout flow shows: the confirmation page, the silent and
//! popup pages, and the `/logout/done` page that announces the end of the
//! IdP leg to its parent or opener. Scripts run only with the response's
//! nonce; nothing here ever contains a token.

use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY};
use http::{HeaderValue, Response, StatusCode};

use crate::pages::{self, Body, Framing, Page, escape};

/// A JavaScript string literal (JSON is a subset), safe inside `<script>`:
/// `<` is escaped so no value can close the script element.
pub fn js_string(value: &str) -> String {
    serde_json::Value::String(value.to_owned())
        .to_string()
        .replace('<', "\\u003c")
}

/// Fields the confirmation form posts back.
pub struct ConfirmFields<'a> {
    /// The logout path.
    pub action: &'a str,
    /// This session's CSRF token, when there is a session.
    pub csrf: Option<&'a str>,
    /// Requested mode, if any.
    pub mode: Option<&'a str>,
    /// Requested return_to, if any.
    pub return_to: Option<&'a str>,
    /// Requested scope, if any.
    pub scope: Option<&'a str>,
    /// Origins besides this one that the form's answer may redirect to
    /// (the IdP's end-session endpoint, absolute `allowed_return_to`
    /// URLs): browsers apply `form-action` to every redirect after a form
    /// submission, so each must be listed there.
    pub redirect_origins: &'a [String],
}

/// The 200 confirmation page: a POST form with the CSRF token.
pub fn confirm(f: &ConfirmFields<'_>) -> Response<Body> {
    let mut hidden = String::new();
    for (name, value) in [
        ("csrf", f.csrf),
        ("mode", f.mode),
        ("return_to", f.return_to),
        ("scope", f.scope),
    ] {
        if let Some(v) = value {
            hidden.push_str(&format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                escape(v)
            ));
        }
    }
    let body = format!(
        "<h1>Sign out?</h1><p>Do you want to sign out?</p>\
         <form method=\"post\" action=\"{}\">{hidden}<button type=\"submit\">Sign out</button></form>",
        escape(f.action)
    );
    let mut resp = Page {
        status: StatusCode::OK,
        title: "Sign out?",
        body_html: &body,
        script: None,
        framing: Framing::Deny,
    }
    .render();
    // Under `no-referrer` (every other gateway page) a browser submits
    // this form with `Origin: null`, which never logs out: the user would
    // get this page again after every click. `same-origin` lets the real
    // origin go with the form (it posts only to this origin) and still
    // tells other sites nothing.
    resp.headers_mut()
        .insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    let extra: String = f
        .redirect_origins
        .iter()
        .filter(|o| is_origin(o))
        .map(|o| format!(" {o}"))
        .collect();
    let csp = resp
        .headers()
        .get(CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .map(|csp| csp.replace("form-action 'self'", &format!("form-action 'self'{extra}")));
    if let Some(v) = csp.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// Which page [`continue_page`] shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContinueMode {
    /// The IdP leg runs in a hidden iframe, without a click.
    Silent,
    /// The IdP leg runs in a popup the user opens with a button.
    Popup,
}

/// The silent or popup page: the gateway session has ended; the IdP leg
/// runs through `logout.js` (hidden iframe, or a popup opened from the
/// button's click handler, as browsers require). `idp_origin` is the
/// origin of the end-session endpoint: the hidden iframe starts on this
/// origin's `/logout/continue` and is redirected there, and a frame's
/// redirect target must be allowed by `frame-src` too.
pub fn continue_page(
    mode: ContinueMode,
    continue_url: &str,
    destination: &str,
    idp_origin: &str,
) -> Response<Body> {
    let answer = format!(
        "{{\"logged_out\":true,\"continue_url\":{},\"return_to\":{}}}",
        js_string(continue_url),
        js_string(destination)
    );
    let (body, script) = if mode == ContinueMode::Popup {
        (
            "<h1>Signed out of this application</h1>\
             <p>Finish signing out at your identity provider.</p>\
             <p><button type=\"button\" id=\"portcullis-continue\">Finish signing out</button></p>"
                .to_owned(),
            format!(
                "document.getElementById('portcullis-continue').addEventListener('click',function(){{\
                 window.portcullis._continue({answer},'popup').catch(function(){{}});}});"
            ),
        )
    } else {
        (
            "<h1>Signing out…</h1><p>Please wait.</p>".to_owned(),
            format!("window.portcullis._continue({answer},'silent').catch(function(){{}});"),
        )
    };
    let nonce = pages::nonce();
    // Without script the IdP leg still runs: a top-level redirect logout
    // (`fallback=redirect`), by meta refresh or by the link.
    let fallback = pages::escape(&format!("{continue_url}&fallback=redirect"));
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Signing out</title>\
         <noscript><meta http-equiv=\"refresh\" content=\"0;url={fallback}\"></noscript>\
         <script nonce=\"{nonce}\" src=\"{}\"></script></head><body><main>{body}\
         <noscript><p><a href=\"{fallback}\">Finish signing out at your identity provider</a></p></noscript></main>\
         <script nonce=\"{nonce}\">{script}</script></body></html>",
        crate::paths::LOGOUT_JS
    );
    // Only a serialised origin (scheme://host[:port]) goes into the policy;
    // anything else would let a value add directives.
    let idp_source = if is_origin(idp_origin) {
        format!(" {idp_origin}")
    } else {
        String::new()
    };
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; connect-src 'self'; \
         frame-src 'self'{idp_source}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    );
    html_response(StatusCode::OK, html, &csp)
}

/// Whether `value` is a serialised http(s) origin, safe as a CSP source.
fn is_origin(value: &str) -> bool {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    rest.is_some_and(|r| {
        !r.is_empty()
            && r.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    })
}

/// What `/logout/done` tells the page it renders.
pub enum DoneTarget {
    /// Announce to the parent frame (silent).
    Parent,
    /// Announce to the opener and on the BroadcastChannel, then close (popup).
    Opener,
}

/// The `/logout/done` page for silent and popup logouts. Its CSP is
/// exactly the README's ("Where the user goes"): `default-src 'none'; script-src 'nonce-…';
/// frame-ancestors 'self'` — the gateway's own pages may frame it, nothing
/// else may.
pub fn done(target: DoneTarget, state: &str, origin: &str, destination: &str) -> Response<Body> {
    let nonce = pages::nonce();
    let message = format!(
        "{{type:'portcullis:logout',state:{},outcome:'done'}}",
        js_string(state)
    );
    let origin = js_string(origin);
    let destination = js_string(destination);
    let script = match target {
        DoneTarget::Parent => format!(
            "(function(){{var m={message};\
             if(window.parent!==window){{window.parent.postMessage(m,{origin});}}\
             else{{location.replace({destination});}}}})();"
        ),
        DoneTarget::Opener => format!(
            "(function(){{var m={message};\
             try{{if(window.opener){{window.opener.postMessage(m,{origin});}}}}catch(e){{}}\
             try{{var c=new BroadcastChannel('portcullis-logout');c.postMessage(m);c.close();}}catch(e){{}}\
             setTimeout(function(){{window.close();}},50);\
             setTimeout(function(){{location.replace({destination});}},1500);}})();"
        ),
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Signed out</title></head>\
         <body><p>Signed out.</p><script nonce=\"{nonce}\">{script}</script></body></html>"
    );
    let csp = format!("default-src 'none'; script-src 'nonce-{nonce}'; frame-ancestors 'self'");
    html_response(StatusCode::OK, html, &csp)
}

fn html_response(status: StatusCode, html: String, csp: &str) -> Response<Body> {
    let mut resp = Response::new(pages::full(html));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    pages::set_common_headers(h);
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(v) = HeaderValue::from_str(csp) {
        h.insert(CONTENT_SECURITY_POLICY, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confirmation_form_is_posted_with_its_origin_and_may_reach_the_idp() {
        let origins = [
            "https://idp.example".to_owned(),
            "https://www.example.com".to_owned(),
            "https://x.example; script-src *".to_owned(),
        ];
        let resp = confirm(&ConfirmFields {
            action: "/logout",
            csrf: Some("t"),
            mode: None,
            return_to: None,
            scope: None,
            redirect_origins: &origins,
        });
        assert_eq!(resp.headers()[REFERRER_POLICY], "same-origin");
        let csp = resp.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(
            csp.contains("form-action 'self' https://idp.example https://www.example.com;"),
            "{csp}"
        );
        assert!(!csp.contains("x.example"), "{csp}");
    }

    #[test]
    fn the_silent_page_may_frame_the_idp_and_nothing_else() {
        let resp = continue_page(
            ContinueMode::Silent,
            "http://gw.example/.portcullis/logout/continue?state=s",
            "/",
            "https://idp.example:8443",
        );
        let csp = resp.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("frame-src 'self' https://idp.example:8443;"),
            "{csp}"
        );
        for bad in ["https://idp.example; script-src *", "javascript:", ""] {
            let resp = continue_page(ContinueMode::Silent, "/c", "/", bad);
            let csp = resp.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.contains("frame-src 'self';"), "{bad:?}: {csp}");
        }
    }

    #[test]
    fn js_strings_cannot_close_the_script() {
        assert_eq!(
            js_string("</script><x>\"'"),
            "\"\\u003c/script>\\u003cx>\\\"'\""
        );
    }
}
