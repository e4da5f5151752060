//! The API documentation routes, at the original's paths: the UI at `GET /{name}/api/doc`
//! (and `/api/doc/`), the OpenAPI document at `/api/doc/swagger.json` and the UI's files
//! at `/api/doc/swagger_static/{file}`.
//!
//! The UI is Swagger UI from the npm package `swagger-ui-dist`, its files vendored in
//! `host/assets/swagger-ui/` and compiled into the binary with `include_bytes!`: nothing is
//! fetched from the network when building or running (brewblox runs on Raspberry Pis that
//! often have no internet access). The page refers to its files and to the document with
//! relative URLs, so it works under any prefix and behind a proxy that adds one.
//!
//! Caching: the files are referred to with `?v=<content hash>`, so they are served as
//! immutable; the page and the document change with the plugins, so clients revalidate
//! them (`no-cache` with an `ETag`; `If-None-Match` gets a 304).

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, OnceLock},
};

use axum::{
    body::{Body, Bytes},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::Response,
    routing::{get, MethodRouter},
};

use super::{errors, openapi::LazyDocument, route_table::PathParams};

/// The swagger-ui-dist version vendored in `host/assets/swagger-ui/`.
pub const SWAGGER_UI_VERSION: &str = "5.35.0";

const INDEX_TEMPLATE: &str = include_str!("../../assets/swagger-ui/index.html");

/// Cache policy of the UI's files: their URLs carry a content hash.
pub(crate) const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache policy of the page and the document: revalidate every time.
pub(crate) const CACHE_REVALIDATE: &str = "no-cache";

/// The vendored files: name, bytes, content type.
const FILES: &[(&str, &[u8], &str)] = &[
    (
        "swagger-ui-bundle.js",
        include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "swagger-ui.css",
        include_bytes!("../../assets/swagger-ui/swagger-ui.css"),
        "text/css; charset=utf-8",
    ),
    (
        "favicon-32x32.png",
        include_bytes!("../../assets/swagger-ui/favicon-32x32.png"),
        "image/png",
    ),
    (
        "LICENSE",
        include_bytes!("../../assets/swagger-ui/LICENSE"),
        "text/plain; charset=utf-8",
    ),
    (
        "NOTICE",
        include_bytes!("../../assets/swagger-ui/NOTICE"),
        "text/plain; charset=utf-8",
    ),
    (
        "swagger-ui-bundle.js.LICENSE.txt",
        include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js.LICENSE.txt"),
        "text/plain; charset=utf-8",
    ),
];

/// Bytes served with their type, validator and cache policy.
pub(crate) struct Asset {
    body: Bytes,
    content_type: HeaderValue,
    etag: HeaderValue,
    cache_control: HeaderValue,
    /// The hash in the ETag, for cache-busting URLs.
    pub(crate) hash: String,
}

/// FNV-1a, 64 bits: stable across builds and platforms, enough to tell versions apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Asset {
    pub(crate) fn new(
        body: Bytes,
        content_type: &'static str,
        cache_control: &'static str,
    ) -> Self {
        let hash = format!("{:016x}", fnv1a(&body));
        Asset {
            etag: HeaderValue::from_str(&format!("\"{hash}\"")).expect("hex is a valid header"),
            body,
            content_type: HeaderValue::from_static(content_type),
            cache_control: HeaderValue::from_static(cache_control),
            hash,
        }
    }

    /// 200 with the body, or 304 when the client's `If-None-Match` has it already.
    pub(crate) fn serve(&self, request: &HeaderMap) -> Response {
        let fresh = request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|tag| tag.trim().trim_start_matches("W/"))
            .any(|tag| tag == "*" || tag.as_bytes() == self.etag.as_bytes());
        let mut response = if fresh {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
        } else {
            let mut response = Response::new(Body::from(self.body.clone()));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, self.content_type.clone());
            response
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, self.etag.clone());
        headers.insert(header::CACHE_CONTROL, self.cache_control.clone());
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        response
    }
}

/// The vendored files by name, hashed once per process.
static STATIC_FILES: LazyLock<HashMap<&'static str, Asset>> = LazyLock::new(|| immutable(FILES));

/// Embedded files, `(name, bytes, content type)`, as assets by name that never change for the
/// life of the process (their URLs carry a content hash).
pub(crate) fn immutable(
    files: &'static [(&'static str, &'static [u8], &'static str)],
) -> HashMap<&'static str, Asset> {
    files
        .iter()
        .map(|(name, bytes, content_type)| {
            (
                *name,
                Asset::new(Bytes::from_static(bytes), content_type, CACHE_IMMUTABLE),
            )
        })
        .collect()
}

/// Escapes text for HTML.
pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page, for a URL from which `base` leads to `/{name}/api/doc/`.
fn index_page(service_name: &str, base: &str) -> String {
    let mut page = INDEX_TEMPLATE
        .replace("{{TITLE}}", &escape_html(&format!("{service_name} API")))
        .replace("{{BASE}}", base);
    // Cache-busting: each file's URL carries its content hash.
    for (name, asset) in STATIC_FILES.iter() {
        page = page.replace(
            &format!("swagger_static/{name}\""),
            &format!("swagger_static/{name}?v={}\"", asset.hash),
        );
    }
    page
}

/// `GET /api/doc/swagger_static/{file}`.
/// A `file` that is not UTF-8 once decoded (`%FF`) was answered by the extractor with the
/// JSON 400 every other bad path gets.
async fn static_file(params: PathParams, headers: HeaderMap) -> Response {
    let file = params.get("file").ok().flatten().unwrap_or_default();
    match STATIC_FILES.get(file) {
        Some(asset) => asset.serve(&headers),
        None => errors::text(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// A page built at its first request. Building it hashes the vendored files (1.9 MB) for
/// their cache-busting URLs: done at start, that read alone kept 1.9 MB of the binary
/// resident in every service, documentation opened or not.
#[derive(Clone)]
struct LazyPage {
    service_name: Arc<str>,
    base: &'static str,
    page: Arc<std::sync::OnceLock<Asset>>,
}

impl LazyPage {
    fn new(service_name: &str, base: &'static str) -> Self {
        LazyPage {
            service_name: service_name.into(),
            base,
            page: Arc::default(),
        }
    }

    fn get(&self) -> &Asset {
        self.page.get_or_init(|| {
            Asset::new(
                Bytes::from(index_page(&self.service_name, self.base)),
                "text/html; charset=utf-8",
                CACHE_REVALIDATE,
            )
        })
    }
}

/// `swagger.json`: the document serialized at its first request, then kept.
struct LazyJson {
    document: Arc<LazyDocument>,
    asset: OnceLock<Asset>,
}

impl LazyJson {
    fn get(&self) -> &Asset {
        self.asset.get_or_init(|| {
            let json = serde_json::to_vec(self.document.get()).unwrap_or_else(|_| b"{}".to_vec());
            Asset::new(Bytes::from(json), "application/json", CACHE_REVALIDATE)
        })
    }
}

/// The documentation routes (relative to the prefix) for the `AppSpec`'s `extra` list.
/// `document` is the OpenAPI document, built and serialized at its first request.
pub fn routes(service_name: &str, document: Arc<LazyDocument>) -> Vec<(String, MethodRouter)> {
    let document = Arc::new(LazyJson {
        document,
        asset: OnceLock::new(),
    });
    // `/api/doc` resolves relative URLs against `/{name}/api/`; `/api/doc/` against
    // `/{name}/api/doc/`.
    let (bare, slash) = (
        LazyPage::new(service_name, "doc/"),
        LazyPage::new(service_name, ""),
    );
    vec![
        (
            "/api/doc".to_owned(),
            get(move |headers: HeaderMap| async move { bare.get().serve(&headers) }),
        ),
        (
            "/api/doc/".to_owned(),
            get(move |headers: HeaderMap| async move { slash.get().serve(&headers) }),
        ),
        (
            "/api/doc/swagger.json".to_owned(),
            get(move |headers: HeaderMap| async move { document.get().serve(&headers) }),
        ),
        (
            "/api/doc/swagger_static/{file}".to_owned(),
            get(static_file),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_point_at_the_document_and_hashed_files() {
        let bare = index_page("a<b", "doc/");
        assert!(bare.contains("url: \"doc/swagger.json\""));
        assert!(bare.contains("<title>a&lt;b API</title>"));
        let hash = &STATIC_FILES["swagger-ui-bundle.js"].hash;
        assert!(bare.contains(&format!(
            "src=\"doc/swagger_static/swagger-ui-bundle.js?v={hash}\""
        )));
        let slash = index_page("x", "");
        assert!(slash.contains("url: \"swagger.json\""));
        assert!(slash.contains("href=\"swagger_static/swagger-ui.css?v="));
        assert!(!slash.contains("{{"));
    }

    #[test]
    fn etags_revalidate() {
        let asset = Asset::new(Bytes::from_static(b"hello"), "text/plain", CACHE_REVALIDATE);
        let mut headers = HeaderMap::new();
        assert_eq!(asset.serve(&headers).status(), StatusCode::OK);
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", {}", asset.etag.to_str().unwrap())).unwrap(),
        );
        let response = asset.serve(&headers);
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()[header::ETAG], asset.etag);
    }
}
