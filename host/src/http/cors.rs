//! CORS exactly as brewblox-service 0.20.0 answered it (spec §2.3), so that browser clients
//! of the original keep working: `OPTIONS` on any path is answered at once, and every other
//! response, errors included, carries the headers.
//!
//! tower-http's `CorsLayer` refuses `Allow-Credentials: true` with a wildcard origin, which
//! is what the original sends; hence this small middleware.

use axum::{
    body::Body,
    extract::Request,
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::Response,
};

/// The nine methods, in a fixed order (the original's order changed per process, quirk 1).
pub const ALL_METHODS: &str = "CONNECT,DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT,TRACE";

pub async fn cors(request: Request, next: Next) -> Response {
    let methods = request
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .cloned()
        .unwrap_or(HeaderValue::from_static(ALL_METHODS));
    let headers = request
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or(HeaderValue::from_static("*"));
    let mut response = if request.method() == Method::OPTIONS {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::OK;
        response
    } else {
        next.run(request).await
    };
    add_headers(response.headers_mut(), methods, headers);
    response
}

fn add_headers(map: &mut HeaderMap, methods: HeaderValue, headers: HeaderValue) {
    map.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    map.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
    map.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, headers);
    map.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
}
