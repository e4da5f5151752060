//! CORS exactly as brewblox-service 0.20.0 answered it (`docs/brewblox-service-0.20.0.md`), so
//! that browser clients
//! of the original keep working: `OPTIONS` on any path is answered at once, and every other
//! response, errors included, carries the headers.
//!
//! tower-http's `CorsLayer` refuses `Allow-Credentials: true` with a wildcard origin, which
//! is what the original sends; hence this small middleware.

use axum::{
    body::Body,
    extract::Request,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::Response,
};

/// The nine methods, in a fixed order (the original's order changed per process: quirk 1 in
/// `docs/brewblox-service-0.20.0.md`).
pub const ALL_METHODS: &str = "CONNECT,DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT,TRACE";

/// The answer to any `OPTIONS` request, before [`Requested::apply`]: 200, empty.
pub fn preflight() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::OK;
    response
}

/// What the request asks for, echoed back on the response (the original's behaviour).
pub struct Requested {
    methods: HeaderValue,
    headers: HeaderValue,
}

impl Requested {
    pub fn of(request: &Request) -> Self {
        let get = |name, default| {
            request
                .headers()
                .get(name)
                .cloned()
                .unwrap_or(HeaderValue::from_static(default))
        };
        Requested {
            methods: get(header::ACCESS_CONTROL_REQUEST_METHOD, ALL_METHODS),
            headers: get(header::ACCESS_CONTROL_REQUEST_HEADERS, "*"),
        }
    }

    /// Adds the CORS headers to `response`.
    pub fn apply(self, response: &mut Response) {
        add_headers(response.headers_mut(), self.methods, self.headers);
    }
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
