//! The gateway behind a front proxy the operator already runs: Debian's
//! nginx (`auth_request`) or Caddy (`forward_auth`), started on a free port
//! with the configuration the README shows (`deploy/nginx-forward-auth.conf`,
//! `deploy/Caddyfile.forward-auth`), only the listen address and the two
//! upstream addresses replaced; plus the real IdP, the test upstream and the
//! gateway with `public_url` = the front proxy's origin.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::gateway::Gateway;
use super::idp::{Idp, IdpClient, IdpOptions};
use super::stack::{Stack, wait_ready};
use super::upstream::Upstream;
use super::{TEST_CLIENT_SECRET, free_port, wait_for_port};

/// Which front proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// nginx with `auth_request`.
    Nginx,
    /// Caddy with `forward_auth`.
    Caddy,
}

impl Kind {
    /// The template under `deploy/` (the README quotes it verbatim).
    pub fn template_path(self) -> PathBuf {
        let name = match self {
            Kind::Nginx => "nginx-forward-auth.conf",
            Kind::Caddy => "Caddyfile.forward-auth",
        };
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("deploy")
            .join(name)
    }

    /// The template's text.
    pub fn template(self) -> String {
        std::fs::read_to_string(self.template_path()).expect("read the front proxy template")
    }
}

/// Fills the template: the example addresses become the test's.
pub fn render(kind: Kind, port: u16, gateway: &str, app: &str) -> String {
    let text = kind.template();
    let replaced = text
        .replace("127.0.0.1:8080", gateway)
        .replace("127.0.0.1:3000", app);
    let site = match kind {
        Kind::Nginx => ("listen 80;", format!("listen 127.0.0.1:{port};")),
        Kind::Caddy => ("app.example.com {", format!("http://127.0.0.1:{port} {{")),
    };
    assert!(
        replaced.contains(site.0),
        "the template names its site with `{}`",
        site.0
    );
    replaced.replace(site.0, &site.1)
}

/// A running nginx or Caddy; stopped on drop.
pub struct FrontProxy {
    child: Child,
    port: u16,
    kind: Kind,
    dir: tempfile::TempDir,
}

impl FrontProxy {
    /// Starts `kind` on `port`, in front of the gateway at `gateway` and the
    /// app at `app` (both `host:port`).
    pub fn start(kind: Kind, port: u16, gateway: &str, app: &str) -> FrontProxy {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-front-")
            .tempdir()
            .expect("temp dir");
        let site = render(kind, port, gateway, app);
        let mut command = match kind {
            Kind::Nginx => nginx_command(dir.path(), &site),
            Kind::Caddy => caddy_command(dir.path(), &site),
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("stderr.log")).expect("stderr log"),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {kind:?} (run scripts/test-deps.sh): {e}"));
        let mut proxy = FrontProxy {
            child,
            port,
            kind,
            dir,
        };
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if !wait_for_port(addr, Duration::from_secs(15)) {
            let _ = proxy.child.kill();
            panic!("{kind:?} did not listen on {addr}:\n{}", proxy.logs());
        }
        proxy
    }

    /// `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The URL of `path` through the front proxy.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// Which proxy this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// What the proxy wrote to stderr and its error log, for failure messages.
    pub fn logs(&self) -> String {
        ["stderr.log", "error.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir.path().join(f)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for FrontProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx in the foreground, everything it writes under `dir`.
fn nginx_command(dir: &Path, site: &str) -> Command {
    let d = dir.display();
    std::fs::write(dir.join("site.conf"), site).expect("write site.conf");
    let main = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\nevents {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         include {d}/site.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).expect("write nginx.conf");
    let mut c = Command::new("nginx");
    c.arg("-p").arg(dir).arg("-c").arg(dir.join("nginx.conf"));
    c
}

/// Caddy with its admin endpoint and automatic HTTPS off, its state under `dir`.
fn caddy_command(dir: &Path, site: &str) -> Command {
    let config = format!("{{\n\tadmin off\n\tauto_https off\n}}\n\n{site}");
    std::fs::write(dir.join("Caddyfile"), config).expect("write Caddyfile");
    let mut c = Command::new("caddy");
    c.arg("run")
        .arg("--adapter")
        .arg("caddyfile")
        .arg("--config")
        .arg(dir.join("Caddyfile"))
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"));
    c
}

/// What to vary between front-proxy stacks.
#[derive(Default)]
pub struct FrontOptions {
    /// The gateway's `[[route]]` tables (`{app}` is the test upstream).
    pub routes: String,
    /// Lines of `[headers]`.
    pub headers: String,
    /// Lines of `[logout]`.
    pub logout: String,
    /// IdP options; the gateway's client (for the front origin) is added.
    pub idp: IdpOptions,
}

/// The IdP, the app, the gateway and a front proxy before them: what an
/// operator who keeps their own proxy runs. `stack.gateway.url()` is the
/// gateway's own port (what the proxy talks to); browsers use `front`.
pub struct FrontStack {
    /// IdP, app and gateway (`public_url` = the front proxy's origin).
    pub stack: Stack,
    /// nginx or Caddy.
    pub front: FrontProxy,
}

impl FrontStack {
    /// Starts everything. `headers` and `routes` are the gateway's
    /// `[headers]` lines and `[[route]]` tables (`{app}` is the upstream).
    pub fn start(kind: Kind, options: FrontOptions) -> FrontStack {
        let FrontOptions {
            routes,
            headers,
            logout,
            mut idp,
        } = options;
        let front_port = free_port();
        let origin = format!("http://127.0.0.1:{front_port}");
        idp.clients.insert(
            0,
            IdpClient::gateway("portcullis", TEST_CLIENT_SECRET, &origin),
        );
        let idp = Idp::start(idp);
        let app = Upstream::start();
        let config = format!(
            r#"
[server]
listen = "{{listen}}"
public_url = "{origin}"
admin_listen = "{{admin_listen}}"
trusted_proxies = ["127.0.0.1/32"]

[oidc]
issuer = "{{issuer}}"
client_id = "portcullis"
client_secret = "${{PORTCULLIS_CLIENT_SECRET}}"
scopes = ["openid", "email", "profile"]

[session]
secret = "${{PORTCULLIS_SECRET}}"

{routes}

[headers]
{headers}

[logout]
{logout}
"#
        );
        let gateway: Gateway = Gateway::builder(&config)
            .var("issuer", idp.issuer())
            .var("app", app.url())
            .start();
        assert!(
            wait_ready(&gateway),
            "gateway never became ready:\n{}",
            gateway.logs().join("\n")
        );
        let front = FrontProxy::start(
            kind,
            front_port,
            &gateway.addr().to_string(),
            &app.addr().to_string(),
        );
        FrontStack {
            stack: Stack { idp, app, gateway },
            front,
        }
    }
}
