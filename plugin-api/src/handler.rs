//! Handlers: async functions of extractors, for routes, subscriptions and features alike,
//! and the adapters that hand them to the host.

use std::{
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use crate::abi::FfiFuture;
use abi_stable::std_types::{RResult, RString};
use serde::Serialize;

use crate::{
    abi, extract::Call, runtime, Error, Extract, ExtractOwned, IntoResponse, Json, Message,
    Request, Response, Result, Route, Subscription,
};

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::Request {}
    impl Sealed for crate::Message {}
    impl Sealed for crate::Call {}
}

/// What a handler answers: a [`Request`] (a route), a [`Message`] (a subscription) or a
/// [`Call`] (a feature). It fixes what the handler's result turns into.
pub trait Input: sealed::Sealed + Send + 'static {
    /// What the SDK makes of the handler's result.
    #[doc(hidden)]
    type Output: Send + 'static;

    /// The answer when an extractor refused the input.
    #[doc(hidden)]
    fn reject(err: Error) -> Self::Output;
}

impl Input for Request {
    type Output = Response;

    fn reject(err: Error) -> Response {
        err.into_response()
    }
}

impl Input for Message {
    type Output = std::result::Result<(), Failure>;

    fn reject(err: Error) -> Self::Output {
        Err(Failure::refused(err))
    }
}

impl Input for Call {
    /// The feature's answer as JSON text.
    type Output = std::result::Result<String, Failure>;

    fn reject(err: Error) -> Self::Output {
        Err(Failure::refused(err))
    }
}

/// A subscription's or feature's error, with whether an extractor refused the input before
/// the handler ran: the host counts the two apart (a refused message is "dropped", a failed
/// one "failed"), from this type rather than from the error's words.
#[doc(hidden)]
pub struct Failure {
    refused: bool,
    error: Error,
}

impl Failure {
    fn refused(error: Error) -> Self {
        Failure {
            refused: true,
            error,
        }
    }

    fn failed(error: impl Into<Error>) -> Self {
        Failure {
            refused: false,
            error: error.into(),
        }
    }

    /// The ABI's form: the kind of failure, the error with its kind as the code.
    pub(crate) fn into_ffi(self) -> abi::FfiFailure {
        let kind = match self.refused {
            true => abi::failure::REFUSED,
            false => abi::failure::FAILED,
        };
        abi::FfiFailure::new(kind, self.error.to_ffi())
    }
}

/// What a handler may return for an input `I`: for a route anything
/// [`IntoResponse`]; for a subscription `()` or a `Result<()>`; for a feature a
/// [`Json<T>`](Json), a `serde_json::Value`, `()` or a `Result` of those.
pub trait Reply<I: Input> {
    /// Converts the result.
    #[doc(hidden)]
    fn into_output(self) -> I::Output;

    /// Documents the result in the route's OpenAPI entry (routes only).
    #[doc(hidden)]
    fn document(route: &mut Route) {
        let _ = route;
    }
}

impl<R: IntoResponse> Reply<Request> for R {
    fn into_output(self) -> Response {
        self.into_response()
    }

    fn document(route: &mut Route) {
        R::document(route);
    }
}

impl Reply<Message> for () {
    fn into_output(self) -> std::result::Result<(), Failure> {
        Ok(())
    }
}

impl<E: Into<Error>> Reply<Message> for Result<(), E> {
    fn into_output(self) -> std::result::Result<(), Failure> {
        self.map_err(Failure::failed)
    }
}

impl<T: Serialize> Reply<Call> for Json<T> {
    fn into_output(self) -> std::result::Result<String, Failure> {
        serde_json::to_string(&self.0).map_err(Failure::failed)
    }
}

impl Reply<Call> for serde_json::Value {
    fn into_output(self) -> std::result::Result<String, Failure> {
        Ok(self.to_string())
    }
}

impl Reply<Call> for () {
    fn into_output(self) -> std::result::Result<String, Failure> {
        Ok("null".to_owned())
    }
}

impl<T: Reply<Call>, E: Into<Error>> Reply<Call> for Result<T, E> {
    fn into_output(self) -> std::result::Result<String, Failure> {
        self.map_err(Failure::failed)?.into_output()
    }
}

/// An async function that answers an input `I` ([`Request`], [`Message`] or [`Call`]) with
/// state `S`: implemented for every `Fn(T1, …, Tn) -> impl Future<Output = impl Reply<I>>`
/// (up to 8 arguments) whose arguments are extractors — each [`Extract`], the last one
/// [`ExtractOwned`] (so it may be the whole input). `T` is the tuple of argument types
/// (with a marker), which lets one function type be a handler in exactly one way.
///
/// ```
/// use std::sync::Arc;
/// use plugin_api::{Handler, Json, Request, State};
///
/// async fn hello() -> &'static str {
///     "hello"
/// }
/// async fn echo(State(prefix): State<Arc<str>>, Json(v): Json<serde_json::Value>) -> String {
///     format!("{prefix}{v}")
/// }
/// fn assert_route<T, S, H: Handler<Request, T, S>>(_: H) {}
/// assert_route::<_, (), _>(hello);
/// assert_route::<_, Arc<str>, _>(echo);
/// ```
pub trait Handler<I: Input, T, S>: Send + Sync + 'static {
    /// Extracts the arguments and runs the function.
    fn call(&self, input: I, state: &S) -> impl Future<Output = I::Output> + Send + 'static;

    /// Documents the arguments and the result in a route's OpenAPI entry.
    fn document(route: &mut Route);
}

impl<F, Fut, R, I, S> Handler<I, (), S> for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: Reply<I>,
    I: Input,
{
    fn call(&self, _input: I, _state: &S) -> impl Future<Output = I::Output> + Send + 'static {
        Called::Running { fut: self() }
    }

    fn document(route: &mut Route) {
        R::document(route);
    }
}

macro_rules! handler_with_args {
    ([$($arg:ident),*], $last:ident) => {
        #[allow(non_snake_case)]
        impl<F, Fut, R, I, S, M, $($arg,)* $last> Handler<I, (M, $($arg,)* $last,), S> for F
        where
            F: Fn($($arg,)* $last) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = R> + Send + 'static,
            R: Reply<I>,
            I: Input,
            $($arg: Extract<I, S>,)*
            $last: ExtractOwned<I, S, M>,
        {
            fn call(&self, input: I, state: &S) -> impl Future<Output = I::Output> + Send + 'static {
                let args = (move || -> Result<_> {
                    $(let $arg = <$arg as Extract<I, S>>::extract(&input, state)?;)*
                    let $last = <$last as ExtractOwned<I, S, M>>::extract_owned(input, state)?;
                    Ok(($($arg,)* $last,))
                })();
                match args {
                    Ok(($($arg,)* $last,)) => Called::Running { fut: self($($arg,)* $last) },
                    Err(err) => Called::Rejected { output: Some(I::reject(err)) },
                }
            }

            fn document(route: &mut Route) {
                $(<$arg as Extract<I, S>>::document(route);)*
                <$last as ExtractOwned<I, S, M>>::document(route);
                R::document(route);
            }
        }
    };
}

pin_project_lite::pin_project! {
    /// A handler's call: its function's future, or the answer to an input an extractor
    /// refused. A future of its own rather than an `async` block, which would keep the
    /// function's future twice (as captured, and as awaited) and so double the size of
    /// every handler future, and with it the allocation the host's call makes for it.
    #[project = CalledProj]
    enum Called<Fut, I: Input> {
        Running { #[pin] fut: Fut },
        Rejected { output: Option<I::Output> },
    }
}

impl<Fut, R, I> Future for Called<Fut, I>
where
    Fut: Future<Output = R>,
    R: Reply<I>,
    I: Input,
{
    type Output = I::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<I::Output> {
        match self.project() {
            CalledProj::Running { fut } => fut.poll(cx).map(Reply::into_output),
            CalledProj::Rejected { output } => Poll::Ready(
                output
                    .take()
                    .unwrap_or_else(|| I::reject(Error::msg("handler polled after completion"))),
            ),
        }
    }
}

handler_with_args!([], T1);
handler_with_args!([T1], T2);
handler_with_args!([T1, T2], T3);
handler_with_args!([T1, T2, T3], T4);
handler_with_args!([T1, T2, T3, T4], T5);
handler_with_args!([T1, T2, T3, T4, T5], T6);
handler_with_args!([T1, T2, T3, T4, T5, T6], T7);
handler_with_args!([T1, T2, T3, T4, T5, T6, T7], T8);

/// A handler with its state, as the host's ABI objects hold it.
struct Bound<H, T, S> {
    handler: H,
    state: S,
    /// `fn() -> T`: the argument types are only a marker, never held.
    _args: PhantomData<fn() -> T>,
}

/// Shared so that each call clones one `Arc`, not the handler and the state.
pub(crate) struct Adapter<H, T, S>(Arc<Bound<H, T, S>>);

impl<H, T, S> Adapter<H, T, S> {
    pub(crate) fn new(handler: H, state: S) -> Self {
        Adapter(Arc::new(Bound {
            handler,
            state,
            _args: PhantomData,
        }))
    }
}

impl<H, T, S> abi::RouteHandler for Adapter<H, T, S>
where
    H: Handler<Request, T, S>,
    S: Send + Sync + 'static,
    T: 'static,
{
    fn handle(
        &self,
        request: abi::FfiRequest,
    ) -> FfiFuture<RResult<abi::FfiResponse, abi::FfiFailure>> {
        let bound = Arc::clone(&self.0);
        // Everything of the plugin's — extracting, the handler — runs inside the guard.
        runtime::into_ffi(async move {
            let response = bound
                .handler
                .call(Request::from_ffi(request), &bound.state)
                .await;
            match response.internal_error {
                Some(error) => Err(abi::FfiFailure::new(abi::failure::FAILED, error)),
                None => Ok(response.into_ffi()),
            }
        })
    }
}

impl<H, T, S> abi::MessageHandler for Adapter<H, T, S>
where
    H: Handler<Message, T, S>,
    S: Send + Sync + 'static,
    T: 'static,
{
    fn on_message(
        &self,
        subscription: abi::HostSubscriptionArc,
        message: abi::FfiMessage,
    ) -> FfiFuture<RResult<(), abi::FfiFailure>> {
        let bound = Arc::clone(&self.0);
        runtime::into_ffi(async move {
            let message = Message::received(message, Subscription::new(subscription));
            let handled = bound.handler.call(message, &bound.state).await;
            handled.map_err(Failure::into_ffi)
        })
    }
}

impl<H, T, S> abi::Feature for Adapter<H, T, S>
where
    H: Handler<Call, T, S>,
    S: Send + Sync + 'static,
    T: 'static,
{
    fn call(&self, input: RString) -> FfiFuture<RResult<RString, abi::FfiFailure>> {
        let bound = Arc::clone(&self.0);
        runtime::into_ffi(async move {
            let answer = bound
                .handler
                .call(Call::new(input.into_string()), &bound.state)
                .await;
            answer.map(RString::from).map_err(Failure::into_ffi)
        })
    }
}
