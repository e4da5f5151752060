//! Extractors: what a handler takes as arguments, taken from the request, message or call
//! it answers and from the state it was registered with.
//!
//! One set of extractors serves the three kinds of handler — routes (input [`Request`]),
//! eventbus subscriptions (input [`Message`]) and features (input [`Call`]) — so that they
//! all read the same: `async fn(State(device): State<Arc<Device>>, Json(body): Json<T>)`.

use std::{fmt, ops::Deref};

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::{decode, Error, Message, Request, Result, Route, Subscription};

/// A feature call as its handler receives it: the caller's input, as JSON text.
#[derive(Debug, Clone)]
pub struct Call {
    input: String,
}

impl Call {
    /// A call with `input` (JSON text), for tests.
    ///
    /// ```
    /// let call = plugin_api::Call::new(r#"{"n": 2}"#);
    /// assert_eq!(call.input(), r#"{"n": 2}"#);
    /// ```
    pub fn new(input: impl Into<String>) -> Self {
        Call {
            input: input.into(),
        }
    }

    /// The input as JSON text.
    ///
    /// ```
    /// assert_eq!(plugin_api::Call::new("1").input(), "1");
    /// ```
    pub fn input(&self) -> &str {
        &self.input
    }
}

/// Takes a value out of an input `I` (a [`Request`], a [`Message`], a [`Call`]) and the
/// handler's state `S`, without consuming the input. Every handler argument but the last
/// implements it; the last may also take the whole input (see [`ExtractOwned`]).
///
/// An `Err` answers the input without calling the handler: a route answers with the
/// error (a 400 naming the field for the SDK's extractors), a subscription logs it and goes
/// on with the next message, a feature returns it to the caller.
///
/// Implement it for your own extractors:
///
/// ```
/// use plugin_api::{Error, Extract, Request, Result};
///
/// /// The `x-device` header, required.
/// struct DeviceHeader(String);
///
/// impl<S> Extract<Request, S> for DeviceHeader {
///     fn extract(req: &Request, _state: &S) -> Result<Self> {
///         req.header("x-device")
///             .map(|id| DeviceHeader(id.to_owned()))
///             .ok_or_else(|| Error::invalid("the x-device header is missing").field("x-device"))
///     }
/// }
/// ```
pub trait Extract<I, S>: Sized {
    /// Takes the value.
    fn extract(input: &I, state: &S) -> Result<Self>;

    /// Adds what this extractor reads to the route's documentation (routes only; nothing
    /// by default).
    fn document(route: &mut Route) {
        let _ = route;
    }
}

/// Takes a value out of an input, consuming it: what a handler's last argument implements.
/// Every [`Extract`] type does (marker [`ByRef`]); the raw input itself — [`Request`],
/// [`Message`] — does too (marker [`Whole`]).
pub trait ExtractOwned<I, S, M>: Sized {
    /// Takes the value.
    fn extract_owned(input: I, state: &S) -> Result<Self>;

    /// See [`Extract::document`].
    fn document(route: &mut Route) {
        let _ = route;
    }
}

/// Marks an [`ExtractOwned`] that borrows the input (every [`Extract`] type).
#[derive(Debug)]
pub enum ByRef {}

/// Marks an [`ExtractOwned`] that is the whole input.
#[derive(Debug)]
pub enum Whole {}

impl<I, S, T: Extract<I, S>> ExtractOwned<I, S, ByRef> for T {
    fn extract_owned(input: I, state: &S) -> Result<Self> {
        T::extract(&input, state)
    }

    fn document(route: &mut Route) {
        T::document(route);
    }
}

impl<S> ExtractOwned<Request, S, Whole> for Request {
    fn extract_owned(input: Request, _state: &S) -> Result<Self> {
        Ok(input)
    }
}

impl<S> ExtractOwned<Message, S, Whole> for Message {
    fn extract_owned(input: Message, _state: &S) -> Result<Self> {
        Ok(input)
    }
}

/// The state a handler was registered with ([`Context::with_state`](crate::Context::with_state)):
/// usually the plugin itself, as an `Arc`.
///
/// ```no_run
/// use std::sync::{atomic::{AtomicU64, Ordering}, Arc};
/// use plugin_api::{Context, Json, Plugin, Result, Route, State};
///
/// #[derive(Default)]
/// struct Counter { hits: AtomicU64 }
///
/// async fn hit(State(counter): State<Arc<Counter>>) -> Json<u64> {
///     Json(counter.hits.fetch_add(1, Ordering::Relaxed) + 1)
/// }
///
/// impl Plugin for Counter {
///     async fn startup(self: Arc<Self>, ctx: &Context) -> Result<()> {
///         ctx.with_state(self).route(Route::post("/hit"), hit)
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct State<S>(pub S);

impl<I, S: Clone> Extract<I, S> for State<S> {
    fn extract(_input: &I, state: &S) -> Result<Self> {
        Ok(State(state.clone()))
    }
}

impl<S> Deref for State<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.0
    }
}

/// JSON: as an argument, the request body, the message payload or the feature input
/// decoded into `T` (a mismatch is an [`Invalid`](crate::ErrorKind::Invalid) error naming
/// the field: `{"error": "...", "field": "setpoint"}`); as a return value, `T` serialized.
///
/// In a route, `T`'s schema ([`JsonSchema`](crate::JsonSchema)) documents the request
/// body or the response.
///
/// ```
/// use plugin_api::{IntoResponse, Json};
///
/// #[derive(serde::Serialize, plugin_api::JsonSchema)]
/// # #[schemars(crate = "plugin_api::schemars")]
/// struct State { setpoint: f64 }
///
/// let res = Json(State { setpoint: 20.0 }).into_response();
/// assert_eq!(res.body_bytes(), br#"{"setpoint":20.0}"#);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Json<T>(pub T);

impl<T> Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<S, T: DeserializeOwned + JsonSchema> Extract<Request, S> for Json<T> {
    fn extract(req: &Request, _state: &S) -> Result<Self> {
        decode::json(req.body()).map(Json)
    }

    fn document(route: &mut Route) {
        route.document_request_body::<T>();
    }
}

impl<S, T: DeserializeOwned> Extract<Message, S> for Json<T> {
    fn extract(message: &Message, _state: &S) -> Result<Self> {
        message.json().map(Json)
    }
}

impl<S, T: DeserializeOwned> Extract<Call, S> for Json<T> {
    fn extract(call: &Call, _state: &S) -> Result<Self> {
        decode::json(call.input.as_bytes()).map(Json)
    }
}

/// The route's path parameters (`{id}` segments) decoded into `T`: a struct by name, a
/// tuple by position, or a single value when the route has one parameter. A value that
/// does not decode is a 400 naming the parameter. `T`'s schema documents the parameters.
///
/// ```no_run
/// use plugin_api::{Json, Path};
///
/// // Route::get("/items/{group}/{id}")
/// async fn item(Path((group, id)): Path<(String, u32)>) -> Json<String> {
///     Json(format!("{group}/{id}"))
/// }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Path<T>(pub T);

impl<S, T: DeserializeOwned + JsonSchema> Extract<Request, S> for Path<T> {
    fn extract(req: &Request, _state: &S) -> Result<Self> {
        decode::path(&req.params().collect::<Vec<_>>()).map(Path)
    }

    fn document(route: &mut Route) {
        route.document_path::<T>();
    }
}

/// The query string decoded into `T`. A missing or mistyped parameter is a 400 naming it
/// (`?limit=abc` → `{"error": "...", "field": "limit"}`). `T`'s fields document the query
/// parameters, with their doc comments as descriptions.
///
/// ```no_run
/// use plugin_api::{Json, Query};
///
/// #[derive(serde::Deserialize, plugin_api::JsonSchema)]
/// # #[schemars(crate = "plugin_api::schemars")]
/// struct Paging {
///     /// Most entries to return.
///     limit: Option<usize>,
/// }
///
/// async fn recent(Query(paging): Query<Paging>) -> Json<usize> {
///     Json(paging.limit.unwrap_or(10))
/// }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Query<T>(pub T);

impl<S, T: DeserializeOwned + JsonSchema> Extract<Request, S> for Query<T> {
    fn extract(req: &Request, _state: &S) -> Result<Self> {
        decode::query(req.query()).map(Query)
    }

    fn document(route: &mut Route) {
        route.document_query::<T>();
    }
}

/// The request's headers (a header the `http` crate cannot represent is left out).
impl<S> Extract<Request, S> for HeaderMap {
    fn extract(req: &Request, _state: &S) -> Result<Self> {
        let mut headers = HeaderMap::new();
        for (name, value) in req.headers() {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                headers.append(name, value);
            }
        }
        Ok(headers)
    }
}

/// The request's method (for [`Route::any`](crate::Route::any)).
impl<S> Extract<Request, S> for Method {
    fn extract(req: &Request, _state: &S) -> Result<Self> {
        Method::from_bytes(req.method().as_bytes()).map_err(Error::from)
    }
}

/// The body as UTF-8 text (a 400 when it is not).
impl<S> Extract<Request, S> for String {
    fn extract(req: &Request, _state: &S) -> Result<Self> {
        req.text().map(str::to_owned)
    }
}

/// The payload as UTF-8 text (an `Invalid` error when it is not).
impl<S> Extract<Message, S> for String {
    fn extract(message: &Message, _state: &S) -> Result<Self> {
        message.text().map(str::to_owned)
    }
}

/// The raw body.
impl<S> Extract<Request, S> for Vec<u8> {
    fn extract(req: &Request, _state: &S) -> Result<Self> {
        Ok(req.body().to_vec())
    }
}

/// The raw payload.
impl<S> Extract<Message, S> for Vec<u8> {
    fn extract(message: &Message, _state: &S) -> Result<Self> {
        Ok(message.payload().to_vec())
    }
}

/// Where a message was published: the AMQP routing key or the MQTT topic.
///
/// ```no_run
/// use plugin_api::{Json, Topic};
///
/// async fn on_state(Topic(topic): Topic, Json(state): Json<serde_json::Value>) {
///     tracing::info!("{topic}: {state}");
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic(pub String);

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<S> Extract<Message, S> for Topic {
    fn extract(message: &Message, _state: &S) -> Result<Self> {
        Ok(Topic(message.topic().to_owned()))
    }
}

/// The subscription the message arrived on (to cancel it, say).
impl<S> Extract<Message, S> for Subscription {
    fn extract(message: &Message, _state: &S) -> Result<Self> {
        message
            .subscription()
            .cloned()
            .ok_or_else(|| Error::msg("this message did not arrive on a subscription"))
    }
}
