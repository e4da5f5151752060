//! A route's method, path and API documentation.

use serde_json::{json, Map, Value};

use crate::Method;

/// Where a handler is mounted, with the documentation that goes into the service's
/// OpenAPI document.
///
/// The path is relative to the service prefix: `/device/state` serves
/// `/{name}/device/state`. `{param}` captures one segment, `{*rest}` the remainder.
///
/// ```
/// use plugin_api::Route;
///
/// let route = Route::put("/device/setpoint")
///     .summary("Change the setpoint")
///     .description("The chamber moves toward the new setpoint from the next update on.");
/// assert_eq!(route.path(), "/device/setpoint");
/// ```
#[derive(Debug, Clone)]
pub struct Route {
    method: Method,
    path: String,
    docs: Map<String, Value>,
}

impl Route {
    /// A route for `method` at `path`.
    ///
    /// ```
    /// let route = plugin_api::Route::new(plugin_api::Method::Any, "/proxy/{*rest}");
    /// ```
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Route {
            method,
            path: path.into(),
            docs: Map::new(),
        }
    }

    /// `GET` (which also answers `HEAD`).
    ///
    /// ```
    /// let route = plugin_api::Route::get("/hello");
    /// ```
    pub fn get(path: impl Into<String>) -> Self {
        Route::new(Method::Get, path)
    }

    /// `POST`.
    ///
    /// ```
    /// let route = plugin_api::Route::post("/items");
    /// ```
    pub fn post(path: impl Into<String>) -> Self {
        Route::new(Method::Post, path)
    }

    /// `PUT`.
    ///
    /// ```
    /// let route = plugin_api::Route::put("/items/{id}");
    /// ```
    pub fn put(path: impl Into<String>) -> Self {
        Route::new(Method::Put, path)
    }

    /// `PATCH`.
    ///
    /// ```
    /// let route = plugin_api::Route::patch("/items/{id}");
    /// ```
    pub fn patch(path: impl Into<String>) -> Self {
        Route::new(Method::Patch, path)
    }

    /// `DELETE`.
    ///
    /// ```
    /// let route = plugin_api::Route::delete("/items/{id}");
    /// ```
    pub fn delete(path: impl Into<String>) -> Self {
        Route::new(Method::Delete, path)
    }

    /// A one-line summary for the API documentation.
    ///
    /// ```
    /// let route = plugin_api::Route::get("/hello").summary("Say hello");
    /// ```
    pub fn summary(mut self, text: impl Into<String>) -> Self {
        self.docs
            .insert("summary".into(), Value::String(text.into()));
        self
    }

    /// A longer description for the API documentation.
    ///
    /// ```
    /// let route = plugin_api::Route::get("/hello").description("Answers with a greeting.");
    /// ```
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.docs
            .insert("description".into(), Value::String(text.into()));
        self
    }

    /// Sets one field of the OpenAPI operation object directly (e.g. `requestBody`).
    ///
    /// ```
    /// let route = plugin_api::Route::get("/hello")
    ///     .openapi("deprecated", serde_json::json!(true));
    /// ```
    pub fn openapi(mut self, key: &str, value: Value) -> Self {
        self.docs.insert(key.to_owned(), value);
        self
    }

    /// The method.
    ///
    /// ```
    /// assert_eq!(plugin_api::Route::get("/x").method(), plugin_api::Method::Get);
    /// ```
    pub fn method(&self) -> Method {
        self.method
    }

    /// The path relative to the service prefix.
    ///
    /// ```
    /// assert_eq!(plugin_api::Route::get("/x").path(), "/x");
    /// ```
    pub fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn docs_json(&self) -> String {
        if self.docs.is_empty() {
            String::new()
        } else {
            json!(self.docs).to_string()
        }
    }
}
