//! A route's method, path and API documentation.

use schemars::{generate::Contract, JsonSchema};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::{
    openapi::{merge_schemas, schema_for, SCHEMAS_KEY},
    Method,
};

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
///
/// The host lists every route in the OpenAPI document at `/{name}/api/doc/swagger.json`
/// (and the UI at `/{name}/api/doc`), a route that declares nothing with its method and path
/// only. Request and response schemas are derived from Rust types with
/// [`JsonSchema`](crate::JsonSchema), re-exported here so that a plugin needs no schemars
/// dependency of its own; tell the derive where schemars is with
/// `#[schemars(crate = "plugin_api::schemars")]`. Doc comments become descriptions (the
/// host turns rustdoc links such as `` [`State`] `` into plain text), and serde attributes
/// (`rename`, `default`, …) are honoured.
///
/// Schema names: a type's schema is named after the type (`Reading`), one name whether the
/// route reads it, answers it or both. A type that serde reads and writes differently (a
/// `default` field, `skip_serializing_if`) has two: `Reading-Input` as read (request body,
/// query) and `Reading-Output` as answered. In the service's document, a name that different
/// plugins use for different schemas is qualified with the plugin's name
/// (`fermenter-log.Reading`), as is one that clashes with a host schema; identical schemas
/// are shared. The README's "API documentation" has the full rule.
///
/// ```
/// use plugin_api::{JsonSchema, Route};
/// use serde::{Deserialize, Serialize};
///
/// /// The body of `PUT /device/setpoint`.
/// #[derive(Deserialize, JsonSchema)]
/// #[schemars(crate = "plugin_api::schemars")]
/// struct SetpointRequest {
///     /// Target temperature (°C).
///     setpoint: f64,
/// }
///
/// /// The device's state.
/// #[derive(Serialize, JsonSchema)]
/// #[schemars(crate = "plugin_api::schemars")]
/// struct State {
///     temperature: f64,
///     setpoint: f64,
/// }
///
/// let route = Route::put("/device/setpoint")
///     .summary("Change the setpoint")
///     .request_body::<SetpointRequest>()
///     .response::<State>(200, "The new state")
///     .error_response(400, "The setpoint is missing, mistyped or out of range");
/// let docs = route.docs();
/// assert_eq!(
///     docs["requestBody"]["content"]["application/json"]["schema"]["$ref"],
///     "#/components/schemas/SetpointRequest"
/// );
/// assert_eq!(docs["x-schemas"]["State"]["required"][0], "temperature");
/// ```
#[derive(Debug, Clone)]
pub struct Route {
    method: Method,
    path: String,
    docs: Map<String, Value>,
    /// Named schemas the docs refer to (`#/components/schemas/<name>`).
    schemas: Map<String, Value>,
}

/// The JSON body of an error the SDK answers (see [`Error`](crate::Error)).
#[derive(Serialize, JsonSchema)]
#[serde(rename = "Error")]
#[allow(dead_code)] // only its schema is used
struct ErrorBody {
    /// What went wrong.
    error: String,
    /// The input field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
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
            schemas: Map::new(),
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

    /// Declares the JSON request body: its schema is derived from `T` (as `T` is
    /// deserialized, e.g. by [`Request::json`](crate::Request::json)).
    ///
    /// ```
    /// use plugin_api::{JsonSchema, Route};
    ///
    /// #[derive(serde::Deserialize, JsonSchema)]
    /// #[schemars(crate = "plugin_api::schemars")]
    /// struct NewItem {
    ///     name: String,
    ///     #[serde(default)]
    ///     count: u32,
    /// }
    ///
    /// let docs = Route::post("/items").request_body::<NewItem>().docs();
    /// assert_eq!(docs["requestBody"]["required"], true);
    /// // `count` is optional when read, always present when written: two forms.
    /// assert_eq!(docs["x-schemas"]["NewItem-Input"]["required"], serde_json::json!(["name"]));
    /// ```
    pub fn request_body<T: JsonSchema + ?Sized>(mut self) -> Self {
        let (schema, definitions) = schema_for::<T>(Contract::Deserialize, false);
        let mut body = json!({
            "required": true,
            "content": { "application/json": { "schema": schema } },
        });
        merge_schemas(&mut self.schemas, definitions, &mut [&mut body], "");
        self.docs.insert("requestBody".into(), body);
        self
    }

    /// Declares a JSON response with `status`: its schema is derived from `T` (as `T` is
    /// serialized, e.g. in [`Json`](crate::Json)). Call it once per status.
    ///
    /// ```
    /// use plugin_api::{JsonSchema, Route};
    ///
    /// #[derive(serde::Serialize, JsonSchema)]
    /// #[schemars(crate = "plugin_api::schemars")]
    /// struct Item {
    ///     name: String,
    /// }
    ///
    /// let docs = Route::get("/items")
    ///     .response::<Vec<Item>>(200, "Every item")
    ///     .docs();
    /// let schema = &docs["responses"]["200"]["content"]["application/json"]["schema"];
    /// assert_eq!(schema["type"], "array");
    /// assert_eq!(schema["items"]["$ref"], "#/components/schemas/Item");
    /// assert_eq!(docs["responses"]["200"]["description"], "Every item");
    /// ```
    pub fn response<T: JsonSchema + ?Sized>(
        mut self,
        status: u16,
        description: impl Into<String>,
    ) -> Self {
        let (schema, definitions) = schema_for::<T>(Contract::Serialize, false);
        let mut response = json!({
            "description": description.into(),
            "content": { "application/json": { "schema": schema } },
        });
        merge_schemas(&mut self.schemas, definitions, &mut [&mut response], "");
        self.set_response(status, response);
        self
    }

    /// Declares an error response with `status` and the SDK's JSON error body
    /// `{"error": "...", "field": "..."}` (what an [`Error`](crate::Error) returned by the
    /// handler becomes).
    ///
    /// ```
    /// let docs = plugin_api::Route::get("/items/{id}")
    ///     .error_response(404, "No item with this id")
    ///     .docs();
    /// assert_eq!(
    ///     docs["responses"]["404"]["content"]["application/json"]["schema"]["$ref"],
    ///     "#/components/schemas/Error"
    /// );
    /// ```
    pub fn error_response(self, status: u16, description: impl Into<String>) -> Self {
        self.response::<ErrorBody>(status, description)
    }

    /// Declares the query parameters: one per field of `T`, required unless it is an
    /// `Option` or has a default, as [`Request::query_as`](crate::Request::query_as) reads
    /// them. Field doc comments become the parameters' descriptions.
    ///
    /// ```
    /// use plugin_api::{JsonSchema, Route};
    ///
    /// #[derive(serde::Deserialize, JsonSchema)]
    /// #[schemars(crate = "plugin_api::schemars")]
    /// struct Paging {
    ///     /// Most entries to return.
    ///     limit: Option<u32>,
    /// }
    ///
    /// let docs = Route::get("/items").query::<Paging>().docs();
    /// let limit = &docs["parameters"][0];
    /// assert_eq!(limit["name"], "limit");
    /// assert_eq!(limit["in"], "query");
    /// assert_eq!(limit["required"], false);
    /// assert_eq!(limit["description"], "Most entries to return.");
    /// ```
    pub fn query<T: JsonSchema + ?Sized>(mut self) -> Self {
        let (schema, definitions) = schema_for::<T>(Contract::Deserialize, true);
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut parameters: Vec<Value> = match schema.get("properties").and_then(Value::as_object) {
            Some(properties) => properties
                .iter()
                .map(|(name, property)| {
                    let mut property = property.clone();
                    let description = property
                        .as_object_mut()
                        .and_then(|object| object.remove("description"));
                    let mut parameter = json!({
                        "name": name,
                        "in": "query",
                        "required": required.contains(&name.as_str()),
                        "schema": property,
                    });
                    if let Some(description) = description {
                        parameter["description"] = description;
                    }
                    parameter
                })
                .collect(),
            // Not a plain struct (an enum, a flattened map): one object-valued parameter,
            // which OpenAPI spreads over the query string (form style, exploded).
            None => vec![json!({
                "name": T::schema_name(),
                "in": "query",
                "style": "form",
                "explode": true,
                "schema": schema,
            })],
        };
        {
            let mut fragments: Vec<&mut Value> = parameters.iter_mut().collect();
            merge_schemas(&mut self.schemas, definitions, &mut fragments, "");
        }
        for parameter in parameters {
            self.set_parameter(parameter);
        }
        self
    }

    /// Describes the path parameter `{name}` (or `{*name}`). The host lists every path
    /// parameter anyway, as a required string; this adds the description.
    ///
    /// ```
    /// let docs = plugin_api::Route::get("/items/{id}")
    ///     .path_param("id", "The item's id")
    ///     .docs();
    /// assert_eq!(docs["parameters"][0]["in"], "path");
    /// assert_eq!(docs["parameters"][0]["description"], "The item's id");
    /// ```
    pub fn path_param(mut self, name: &str, description: impl Into<String>) -> Self {
        self.set_parameter(json!({
            "name": name,
            "in": "path",
            "required": true,
            "description": description.into(),
            "schema": { "type": "string" },
        }));
        self
    }

    /// Adds a tag, grouping the route in the UI. Without one, the host tags the route with
    /// the plugin's name.
    ///
    /// ```
    /// let docs = plugin_api::Route::get("/items").tag("Inventory").docs();
    /// assert_eq!(docs["tags"], serde_json::json!(["Inventory"]));
    /// ```
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        let tags = self
            .docs
            .entry("tags")
            .or_insert_with(|| Value::Array(Vec::new()));
        if !tags.is_array() {
            *tags = Value::Array(Vec::new());
        }
        if let Value::Array(tags) = tags {
            let tag = Value::String(tag.into());
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        self
    }

    /// The documentation as the host receives it: an OpenAPI operation object, plus the
    /// named schemas its `$ref`s point to under [`SCHEMAS_KEY`](crate::openapi::SCHEMAS_KEY).
    /// An empty object when nothing was declared.
    ///
    /// ```
    /// let docs = plugin_api::Route::get("/hello").summary("Say hello").docs();
    /// assert_eq!(docs, serde_json::json!({"summary": "Say hello"}));
    /// ```
    pub fn docs(&self) -> Value {
        let mut docs = self.docs.clone();
        if !self.schemas.is_empty() {
            docs.insert(SCHEMAS_KEY.into(), Value::Object(self.schemas.clone()));
        }
        Value::Object(docs)
    }

    fn set_response(&mut self, status: u16, response: Value) {
        let responses = self
            .docs
            .entry("responses")
            .or_insert_with(|| Value::Object(Map::new()));
        if !responses.is_object() {
            *responses = Value::Object(Map::new());
        }
        if let Value::Object(responses) = responses {
            responses.insert(status.to_string(), response);
        }
    }

    /// Adds a parameter, replacing one with the same name and location.
    fn set_parameter(&mut self, parameter: Value) {
        let parameters = self
            .docs
            .entry("parameters")
            .or_insert_with(|| Value::Array(Vec::new()));
        if !parameters.is_array() {
            *parameters = Value::Array(Vec::new());
        }
        if let Value::Array(parameters) = parameters {
            parameters.retain(|existing| {
                existing.get("name") != parameter.get("name")
                    || existing.get("in") != parameter.get("in")
            });
            parameters.push(parameter);
        }
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
        if self.docs.is_empty() && self.schemas.is_empty() {
            String::new()
        } else {
            self.docs().to_string()
        }
    }
}
