//! What the host does to every request and response, in front of the routes: the route is
//! found ([`RouteTable`], the one path match of a request), CORS as the original ([`cors`]:
//! `OPTIONS` answered at once, headers on every response), the original's text body on bare
//! error responses ([`errors::fill_error_body`]), the body limit (`body::limit`), a panic in
//! a host handler turned into a 500, the request recorded in its route's metrics series, and
//! with `--debug` the access log ([`access_log`]), which sees the final response.
//!
//! One hand-written service rather than `middleware::from_fn` and tower-http layers added
//! with `Router::layer`: every such layer wraps each route again, and each wrap clones and
//! boxes the route, its future and often the body on every request. Together they cost the
//! status route a third of its instructions (BENCHMARKS.md). This one boxes no future on
//! the way of a request that succeeds ([`Answer`]; a bare error's body is filled in a box),
//! and only wraps a body that is there.

use std::{
    convert::Infallible,
    future::Future,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
    time::Instant,
};

use axum::{
    extract::Request,
    http::{Method, StatusCode},
    response::Response,
    routing::future::RouteFuture,
};
use futures::{
    future::{BoxFuture, CatchUnwind},
    FutureExt,
};
use pin_project_lite::pin_project;
use tower::Service;

use super::{
    access_log, body,
    body_timeout::BodyTimeouts,
    cors, errors,
    route_table::{Called, RouteTable},
};
use crate::metrics::http::{InFlight, Outcome, RouteSeries};

/// Marks a response whose handler panicked (a plugin's, caught in the plugin route), so
/// that the metrics count it.
#[derive(Clone, Copy, Debug)]
pub struct Panicked;

/// See the [module docs](self).
#[derive(Clone)]
pub struct Front {
    /// The app's routes, with their metrics series (and the in-flight gauge).
    pub routes: Arc<RouteTable>,
    /// `--max-body-size`.
    pub max_body_size: usize,
    /// `--http-body-timeout` and `--http-body-idle-timeout`.
    pub body_timeouts: BodyTimeouts,
    /// Write aiohttp's access-log lines (`--debug`; the original muted them otherwise).
    pub access_log: bool,
}

impl Service<Request> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Answer {
        self.answer(request)
    }
}

impl Front {
    /// [`Service::call`] without the `&mut` (the front is always ready, and changes nothing
    /// as it answers): the server calls it on the app it shares, with no clone.
    pub fn answer(&self, request: Request) -> Answer {
        let started = Instant::now();
        let found = self.routes.find(request.uri().path());
        let finish = Finish {
            series: Arc::clone(found.series()),
            method: request.method().clone(),
            started,
            in_flight: self.routes.in_flight(),
            // Boxed: four strings, kept only with `--debug`, would otherwise widen every
            // request's future.
            access: self
                .access_log
                .then(|| Box::new(access_log::Entry::of(&request))),
            requested: cors::Requested::of(&request),
        };
        let mut outcome = Outcome::Answered;
        let step = if request.method() == Method::OPTIONS {
            Step::answered(cors::preflight())
        } else {
            match body::limit(request, self.max_body_size, self.body_timeouts) {
                Err(refused) => Step::answered(*refused),
                Ok(request) => match catch_unwind(AssertUnwindSafe(move || found.call(request))) {
                    Ok(Called::Ready(response)) => Step::routed(response, &mut outcome),
                    Ok(Called::Pending(future)) => Step::Route {
                        future: AssertUnwindSafe(future).catch_unwind(),
                    },
                    Err(_) => Step::routed(panicked(), &mut outcome),
                },
            }
        };
        Answer {
            step,
            outcome,
            finish: Some(finish),
        }
    }
}

pin_project! {
    /// A request's answer: the route's response (awaited if it is not ready, a panic in it
    /// caught), a bare error's body, then what [`Finish`] does.
    ///
    /// A future of its own rather than a boxed `async` block: over HTTP/1, hyper keeps a
    /// connection's service future in one slot for all its requests, so the front allocates
    /// none for it (an HTTP/2 stream is a task of its own); and the `async` block held the
    /// route's future twice, as captured and as awaited (1,528 bytes, over malloc's
    /// per-thread cache; this is 472).
    pub struct Answer {
        #[pin]
        step: Step,
        outcome: Outcome,
        finish: Option<Finish>,
    }
}

pin_project! {
    #[project = StepProj]
    enum Step {
        /// The route's future.
        Route {
            #[pin]
            future: CatchUnwind<AssertUnwindSafe<RouteFuture<Infallible>>>,
        },
        /// A bare error response getting the original's body (boxed: only errors take it).
        Filling { future: BoxFuture<'static, Response> },
        /// The response, ready to be finished.
        Answered { response: Option<Response> },
    }
}

impl Step {
    fn answered(response: Response) -> Step {
        Step::Answered {
            response: Some(response),
        }
    }

    /// The route's response: a panic caught in a plugin route is counted as one, and a bare
    /// error gets its body.
    fn routed(response: Response, outcome: &mut Outcome) -> Step {
        if response.status() == StatusCode::INTERNAL_SERVER_ERROR
            && response.extensions().get::<Panicked>().is_some()
        {
            *outcome = Outcome::Panicked;
        }
        if errors::needs_error_body(&response) {
            Step::Filling {
                future: Box::pin(errors::fill_error_body(response)),
            }
        } else {
            Step::answered(response)
        }
    }
}

impl Future for Answer {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.step.as_mut().project() {
                StepProj::Route { future } => {
                    let response = match ready!(future.poll(cx)) {
                        Ok(Ok(response)) => response,
                        Ok(Err(never)) => match never {},
                        Err(_) => panicked(),
                    };
                    Step::routed(response, this.outcome)
                }
                StepProj::Filling { future } => Step::answered(ready!(future.as_mut().poll(cx))),
                StepProj::Answered { response } => {
                    // Both are taken here, once; only a poll after the answer finds them gone,
                    // and a finished future may stay pending.
                    let (Some(response), Some(finish)) = (response.take(), this.finish.take())
                    else {
                        return Poll::Pending;
                    };
                    return Poll::Ready(Ok(finish.finish(response, *this.outcome)));
                }
            };
            this.step.set(next);
        }
    }
}

/// What every answer gets once its response is known.
struct Finish {
    series: Arc<RouteSeries>,
    method: Method,
    started: Instant,
    in_flight: InFlight,
    access: Option<Box<access_log::Entry>>,
    requested: cors::Requested,
}

impl Finish {
    /// Records the request in its route's series, ends it in the in-flight gauge, adds the
    /// CORS headers and writes the access-log line.
    fn finish(self, mut response: Response, outcome: Outcome) -> Response {
        let Finish {
            series,
            method,
            started,
            in_flight,
            access,
            requested,
        } = self;
        series.record(
            &method,
            response.status(),
            started.elapsed().as_secs_f64(),
            outcome,
        );
        drop(in_flight);
        requested.apply(&mut response);
        if let Some(entry) = access {
            entry.log(&response);
        }
        response
    }
}

fn panicked() -> Response {
    let mut response = errors::text(StatusCode::INTERNAL_SERVER_ERROR, "host handler panicked");
    response.extensions_mut().insert(Panicked);
    response
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    use axum::{body::Body, http::header};
    use futures::StreamExt as _;
    use http_body_util::BodyExt;
    use tower::{service_fn, ServiceExt};

    use super::*;
    use crate::http::route_table::Methods;

    async fn answer(
        service: impl Service<Request, Response = Response, Error = Infallible>,
        request: Request,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = service.oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    /// What a route of the tests is: a `service_fn`.
    trait Inner:
        Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
    {
    }

    impl<S> Inner for S where
        S: Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
            + Clone
            + Send
            + Sync
            + 'static
    {
    }

    fn front(inner: impl Inner) -> Front {
        front_recording(&crate::metrics::Metrics::new().http, inner)
    }

    /// The front of an app whose one route, `/x/{*rest}` (any method), is `inner`, recording
    /// into `http`.
    fn front_recording(http: &crate::metrics::http::HttpMetrics, inner: impl Inner) -> Front {
        let methods: Methods = axum::routing::any_service(inner).into();
        let route = ("/x/{*rest}".to_owned(), None, methods);
        Front {
            routes: Arc::new(RouteTable::build(http, [route])),
            max_body_size: 10,
            body_timeouts: BodyTimeouts::default(),
            access_log: false,
        }
    }

    fn counting(calls: &Arc<AtomicUsize>, status: StatusCode) -> impl Inner {
        let calls = calls.clone();
        service_fn(move |_: Request| {
            calls.fetch_add(1, Ordering::SeqCst);
            let mut response = Response::new(Body::empty());
            *response.status_mut() = status;
            async move { Ok::<_, Infallible>(response) }
        })
    }

    /// A request's future fits glibc's per-thread cache of freed blocks (requests of up to
    /// 1,032 bytes), wherever it is boxed (an HTTP/2 stream's task): a larger box takes
    /// malloc's slow path, which first sweeps the fast bins.
    #[test]
    fn the_future_of_a_request_fits_mallocs_per_thread_cache() {
        let size = std::mem::size_of::<Answer>();
        assert!(size <= 1032, "{size} bytes");
    }

    #[tokio::test]
    async fn options_is_answered_here_with_cors() {
        let calls = Arc::new(AtomicUsize::new(0));
        let request = Request::builder()
            .method("OPTIONS")
            .uri("/x/anything")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "PUT")
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) =
            answer(front(counting(&calls, StatusCode::OK)), request).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_METHODS], "PUT");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn bare_errors_get_the_originals_body_and_cors() {
        let calls = Arc::new(AtomicUsize::new(0));
        let request = Request::builder().uri("/x/y").body(Body::empty()).unwrap();
        let (status, headers, body) = answer(
            front(counting(&calls, StatusCode::METHOD_NOT_ALLOWED)),
            request,
        )
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body, "405: Method Not Allowed");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_unread() {
        let calls = Arc::new(AtomicUsize::new(0));
        let request = Request::builder()
            .uri("/x/y")
            .method("POST")
            .header(header::CONTENT_LENGTH, "11")
            .body(Body::from("01234567890"))
            .unwrap();
        let (status, headers, body) =
            answer(front(counting(&calls, StatusCode::OK)), request).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, "413: Payload Too Large")
        );
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    /// A route that reads the body and answers with it.
    fn reader() -> impl Inner {
        service_fn(|request: Request| async move {
            Ok::<_, Infallible>(match body::read(request.into_body()).await {
                Ok(bytes) => Response::new(Body::from(bytes)),
                Err(refused) => refused,
            })
        })
    }

    /// A body of `chunks` ten-byte chunks that counts how many were taken from it.
    fn counted_body(chunks: usize, taken: &Arc<AtomicUsize>) -> Body {
        let taken = taken.clone();
        Body::from_stream(futures::stream::iter(0..chunks).map(move |_| {
            taken.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Infallible>("0123456789")
        }))
    }

    async fn reaches(count: &AtomicUsize, n: usize) -> bool {
        for _ in 0..200 {
            if count.load(Ordering::SeqCst) >= n {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_refused_body_is_read_to_its_end_after_the_answer() {
        // Streamed: refused past the limit, the rest taken in the background.
        let taken = Arc::new(AtomicUsize::new(0));
        let request = Request::builder()
            .uri("/x/y")
            .method("POST")
            .body(counted_body(5, &taken))
            .unwrap();
        let (status, _, _) = answer(front(reader()), request).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(reaches(&taken, 5).await, "{taken:?} of 5 chunks taken");
        // Declared over the limit: answered unread, then taken too.
        let taken = Arc::new(AtomicUsize::new(0));
        let request = Request::builder()
            .uri("/x/y")
            .method("POST")
            .header(header::CONTENT_LENGTH, "50")
            .body(counted_body(5, &taken))
            .unwrap();
        let (status, _, _) = answer(front(reader()), request).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(reaches(&taken, 5).await, "{taken:?} of 5 chunks taken");
    }

    #[tokio::test]
    async fn an_undeclared_body_is_cut_off_at_the_limit_while_read() {
        let stream = futures::stream::iter(["0123456", "789ab"].map(Ok::<_, Infallible>));
        let request = Request::builder()
            .uri("/x/y")
            .method("POST")
            .body(Body::from_stream(stream))
            .unwrap();
        let (status, _, body) = answer(front(reader()), request).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, "413: Payload Too Large")
        );
        let request = Request::builder()
            .uri("/x/y")
            .method("POST")
            .body(Body::from("0123456789"))
            .unwrap();
        let (status, _, body) = answer(front(reader()), request).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "0123456789"));
    }

    #[tokio::test]
    async fn a_panicking_host_handler_is_a_500_and_counted_in_its_apps_registry() {
        let (ours, other) = (
            crate::metrics::Metrics::new(),
            crate::metrics::Metrics::new(),
        );
        let http = &ours.http;
        let at_call = service_fn(
            |_: Request| -> std::future::Ready<Result<Response, Infallible>> { panic!("at call") },
        );
        let at_x = || Request::builder().uri("/x/y").body(Body::empty()).unwrap();
        let (status, headers, body) = answer(front_recording(http, at_call), at_x()).await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "500: host handler panicked"
            )
        );
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let in_future = service_fn(|_: Request| async {
            if true {
                panic!("while polled");
            }
            Ok::<Response, Infallible>(Response::new(Body::empty()))
        });
        let (status, _, body) = answer(front_recording(http, in_future), at_x()).await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "500: host handler panicked"
            )
        );
        assert_eq!(http.panics("/x/{*rest}", "host"), 2);
        // A registry built apart shares nothing with the app's: nothing reaches a
        // process-wide one.
        assert_eq!(other.http.panics("/x/{*rest}", "host"), 0);
    }
}
