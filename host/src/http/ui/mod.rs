//! The operator page: `GET /{name}/_service/ui`, its two files under `/_service/ui/{file}`,
//! and the JSON behind it, `GET /{name}/_service/overview` ([`overview`]).
//!
//! Three files, compiled into the binary (`host/assets/ui/`), no framework, nothing fetched
//! from elsewhere, so the page works offline and paints fast on a small machine (about 25 KB
//! in 4 requests before the first paint; under 0.4 s to it with Chromium's CPU slowed down
//! 6×: BENCHMARKS.md, "The operator page's first paint"):
//! - `index.html`: the page's skeleton (sections and their headings), so that it paints
//!   before the first data arrives;
//! - `ui.js`: polls the overview every 2 s, draws it with DOM APIs (text only: nothing from
//!   the data is ever parsed as HTML) and plots with inline SVG; recovers by itself after a
//!   lost connection;
//! - `ui.css`: the layout.
//!
//! Every answer — the page, its files, the overview JSON, a 404 for an unknown file —
//! carries a Content-Security-Policy that allows only this service's own script, style sheet
//! and data (no inline script, no other origin), `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: same-origin`. The page is read-only: it only sends GET requests.

pub mod overview;

use std::{collections::HashMap, sync::Arc, sync::LazyLock};

use axum::{
    body::Bytes,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::Response,
    routing::{get, MethodRouter},
};

use super::{
    errors,
    route_table::PathParams,
    swagger_ui::{escape_html, immutable, Asset, CACHE_REVALIDATE},
};
use overview::OverviewSources;

/// The page's Content-Security-Policy: own script, style, images and data only; no inline
/// script or style, no plugins, no framing, no `<base>` tricks.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                       form-action 'none'; frame-ancestors 'none'";

const INDEX_TEMPLATE: &str = include_str!("../../../assets/ui/index.html");

/// The page's files: name, bytes, content type.
const FILES: &[(&str, &[u8], &str)] = &[
    (
        "ui.js",
        include_bytes!("../../../assets/ui/ui.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "ui.css",
        include_bytes!("../../../assets/ui/ui.css"),
        "text/css; charset=utf-8",
    ),
];

static STATIC_FILES: LazyLock<HashMap<&'static str, Asset>> = LazyLock::new(|| immutable(FILES));

/// The page of service `name`, its files referred to with their content hash.
fn index_page(name: &str) -> String {
    let mut page = INDEX_TEMPLATE
        .replace(
            "{{TITLE}}",
            &escape_html(&format!("{name} — brewblox-host")),
        )
        .replace("{{NAME}}", &escape_html(name));
    for (file, asset) in STATIC_FILES.iter() {
        page = page.replace(
            &format!("\"ui/{file}\""),
            &format!("\"ui/{file}?v={}\"", asset.hash),
        );
    }
    page
}

/// `response` with the page's security headers.
fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// `GET /_service/ui/{file}`.
async fn static_file(params: PathParams, headers: HeaderMap) -> Response {
    let file = params.get("file").ok().flatten().unwrap_or_default();
    secured(match STATIC_FILES.get(file) {
        Some(asset) => asset.serve(&headers),
        None => errors::text(StatusCode::NOT_FOUND, "Not Found"),
    })
}

/// The page's routes (relative to the prefix) for the `AppSpec`'s `extra` list.
pub fn routes(sources: OverviewSources) -> Vec<(String, MethodRouter)> {
    let page = Arc::new(Asset::new(
        Bytes::from(index_page(&sources.health.name)),
        "text/html; charset=utf-8",
        CACHE_REVALIDATE,
    ));
    let sources = Arc::new(sources);
    vec![
        (
            "/_service/ui".to_owned(),
            get(move |headers: HeaderMap| async move { secured(page.serve(&headers)) }),
        ),
        ("/_service/ui/{file}".to_owned(), get(static_file)),
        (
            "/_service/overview".to_owned(),
            get(move || async move { secured(overview::serve(Arc::clone(&sources)).await) }),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_its_hashed_files_and_escapes_the_name() {
        let page = index_page("a<b");
        assert!(page.contains("<title>a&lt;b — brewblox-host</title>"));
        assert!(page.contains(">a&lt;b</h1>"));
        for file in ["ui.js", "ui.css"] {
            let hash = &STATIC_FILES[file].hash;
            assert!(page.contains(&format!("\"ui/{file}?v={hash}\"")), "{file}");
        }
        assert!(!page.contains("{{"));
        // No inline script: every <script> has a src (the CSP would block it anyway).
        assert_eq!(
            page.matches("<script").count(),
            page.matches("<script src=").count()
        );
    }
}
