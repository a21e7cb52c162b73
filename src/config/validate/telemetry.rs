//! `[telemetry]`: where spans are exported, under which service name, and
//! how many new traces are recorded.

use super::V;
use super::table::Section;
use crate::config::model::TelemetryConfig;
use crate::config::raw::RawTelemetry;

impl V<'_> {
    /// `Some(None)`: export off (no section, or no `otlp_endpoint`);
    /// `None`: broken.
    pub(super) fn telemetry(
        &mut self,
        s: Section<RawTelemetry>,
    ) -> Option<Option<TelemetryConfig>> {
        let t = match s {
            Section::Broken => return None,
            Section::Absent => return Some(None),
            Section::Read(t) => t,
        };
        let r = &t.raw;
        let mut ok = true;

        let service_name = match &r.service_name {
            None => "portcullis".to_owned(),
            Some(v) if v.get_ref().trim().is_empty() => {
                self.sink.error(&v.span(), "service_name must not be empty");
                ok = false;
                String::new()
            }
            Some(v) => v.get_ref().clone(),
        };

        let sample_ratio = match &r.sample_ratio {
            None => 1.0,
            Some(v) => {
                let ratio = *v.get_ref();
                if !(0.0..=1.0).contains(&ratio) {
                    self.sink.error(
                        &v.span(),
                        format!(
                            "sample_ratio must be between 0.0 (no new trace recorded) and 1.0 (every one); it is {ratio}"
                        ),
                    );
                    ok = false;
                }
                ratio
            }
        };

        // Absent or empty (an unset `${VAR}` left empty on purpose): off.
        let endpoint = match &r.otlp_endpoint {
            Some(v) if !v.get_ref().is_empty() => {
                let url = self.http_url(v, "otlp_endpoint", None);
                if let Some(u) = &url {
                    if u.query().is_some() || u.fragment().is_some() {
                        self.sink
                            .error(&v.span(), "otlp_endpoint must not have a query or fragment");
                        ok = false;
                    } else if u.path() == "/" {
                        self.sink.warn(
                            &v.span(),
                            "otlp_endpoint is used as given and has no path: OTLP/HTTP collectors take traces at /v1/traces",
                        );
                    }
                } else {
                    ok = false;
                }
                url
            }
            _ => None,
        };

        if !ok {
            return None;
        }
        Some(endpoint.map(|otlp_endpoint| TelemetryConfig {
            otlp_endpoint,
            service_name,
            sample_ratio,
        }))
    }
}
