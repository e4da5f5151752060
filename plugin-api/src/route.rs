//! A route's method, path and API documentation.

use http::{Method, StatusCode};
use schemars::{generate::Contract, JsonSchema};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::openapi::{merge_schemas, schema_for, SCHEMAS_KEY};

/// Where a handler is mounted, with the words that go into the service's OpenAPI document.
///
/// The path is relative to the service prefix: `/device/state` serves
/// `/{name}/device/state`. `{param}` captures one segment, `{*rest}` the remainder.
///
/// The host lists every route in the OpenAPI document at `/{name}/api/doc/swagger.json`
/// (and the UI at `/{name}/api/doc`). What a route takes and answers is not declared here:
/// it comes from the handler's own types when the route is registered — the request body
/// from [`Json<T>`](crate::Json), the parameters from [`Path<T>`](crate::Path) and
/// [`Query<T>`](crate::Query), the response from the return type — so the documentation
/// cannot say one thing while the handler does another. A `Route` adds the prose: summary,
/// description, tags, the success status, and the errors a handler may answer with.
///
/// Doc comments become descriptions (the host turns rustdoc links such as `` [`State`] ``
/// into plain text), and serde attributes (`rename`, `default`, …) are honoured.
///
/// Schema names: a type's schema is named after the type (`Reading`), one name whether the
/// route reads it, answers it or both. A type that serde reads and writes differently (a
/// `default` field, `skip_serializing_if`) has two: `Reading-Input` as read (request body,
/// query) and `Reading-Output` as answered. In the service's document, a name that different
/// plugins use for different schemas is qualified with the plugin's name
/// (`fermenter-log.Reading`), as is one that clashes with a host schema; identical schemas
/// are shared. "API documentation" in `docs/writing-plugins.md` has the full rule.
///
/// ```
/// use plugin_api::{http::StatusCode, Route};
///
/// let route = Route::put("/device/setpoint")
///     .summary("Change the setpoint")
///     .description("The chamber moves toward the new setpoint from the next update on.")
///     .error_response(StatusCode::CONFLICT, "The device is in manual mode");
/// assert_eq!(route.path(), "/device/setpoint");
/// ```
#[derive(Debug, Clone)]
pub struct Route {
    /// `None`: every method.
    method: Option<Method>,
    path: String,
    success: StatusCode,
    success_description: Option<String>,
    docs: Map<String, Value>,
    /// Named schemas the docs refer to (`#/components/schemas/<name>`).
    schemas: Map<String, Value>,
    /// What of the request the handler's extractors may refuse with a 400 (path, query,
    /// body), in the order they were documented; empty when the author declared the 400.
    refusals: Vec<&'static str>,
}

// The host documents its own error answers with a type of the same name, fields and words
// (host/src/http/json_body.rs), so that the service's document has one `Error` schema; its
// tests check that they stay equal.
/// An error answer: what went wrong and, when there is one, the input field at fault.
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
    /// let route = plugin_api::Route::new(plugin_api::http::Method::OPTIONS, "/items");
    /// ```
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Route::with_method(Some(method), path.into())
    }

    fn with_method(method: Option<Method>, path: String) -> Self {
        Route {
            method,
            path,
            success: StatusCode::OK,
            success_description: None,
            docs: Map::new(),
            schemas: Map::new(),
            refusals: Vec::new(),
        }
    }

    /// `GET` (which also answers `HEAD`).
    ///
    /// ```
    /// let route = plugin_api::Route::get("/hello");
    /// ```
    pub fn get(path: impl Into<String>) -> Self {
        Route::new(Method::GET, path)
    }

    /// `POST`.
    ///
    /// ```
    /// let route = plugin_api::Route::post("/items");
    /// ```
    pub fn post(path: impl Into<String>) -> Self {
        Route::new(Method::POST, path)
    }

    /// `PUT`.
    ///
    /// ```
    /// let route = plugin_api::Route::put("/items/{id}");
    /// ```
    pub fn put(path: impl Into<String>) -> Self {
        Route::new(Method::PUT, path)
    }

    /// `PATCH`.
    ///
    /// ```
    /// let route = plugin_api::Route::patch("/items/{id}");
    /// ```
    pub fn patch(path: impl Into<String>) -> Self {
        Route::new(Method::PATCH, path)
    }

    /// `DELETE`.
    ///
    /// ```
    /// let route = plugin_api::Route::delete("/items/{id}");
    /// ```
    pub fn delete(path: impl Into<String>) -> Self {
        Route::new(Method::DELETE, path)
    }

    /// Every method (a proxy, a catch-all). The handler can take the
    /// [`Method`](crate::http::Method) as an extractor.
    ///
    /// ```
    /// let route = plugin_api::Route::any("/proxy/{*rest}");
    /// assert_eq!(route.method(), None);
    /// ```
    pub fn any(path: impl Into<String>) -> Self {
        Route::with_method(None, path.into())
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

    /// The status a successful answer has (200 unless set), under which the documentation
    /// lists the handler's return type, and what that answer is. The status is documented
    /// whatever the handler returns: with the return type's body for [`Json<T>`](crate::Json)
    /// or text, without a body for a handler that returns a
    /// [`StatusCode`](http::StatusCode) or `Result<StatusCode>`.
    ///
    /// ```
    /// use plugin_api::{http::StatusCode, Route};
    /// let route = Route::post("/items").status(StatusCode::CREATED, "The new item");
    /// ```
    pub fn status(mut self, status: StatusCode, description: impl Into<String>) -> Self {
        self.success = status;
        self.success_description = Some(description.into());
        self
    }

    /// Sets one field of the OpenAPI operation object directly (e.g. `deprecated`).
    ///
    /// ```
    /// let route = plugin_api::Route::get("/hello")
    ///     .openapi("deprecated", serde_json::json!(true));
    /// ```
    pub fn openapi(mut self, key: &str, value: Value) -> Self {
        self.docs.insert(key.to_owned(), value);
        self
    }

    /// Declares an error response with `status` and the SDK's JSON error body
    /// `{"error": "...", "field": "..."}` (what an [`Error`](crate::Error) returned by the
    /// handler becomes). Errors a handler's extractors answer (a 400 for a body, path or
    /// query that does not decode) are listed without it.
    ///
    /// ```
    /// use plugin_api::{http::StatusCode, Route};
    /// let docs = Route::get("/items/{id}")
    ///     .error_response(StatusCode::NOT_FOUND, "No item with this id")
    ///     .docs();
    /// assert_eq!(
    ///     docs["responses"]["404"]["content"]["application/json"]["schema"]["$ref"],
    ///     "#/components/schemas/Error"
    /// );
    /// ```
    pub fn error_response(mut self, status: StatusCode, description: impl Into<String>) -> Self {
        self.add_response::<ErrorBody>(Contract::Serialize, status, description.into());
        self
    }

    /// Describes the path parameter `{name}` (or `{*name}`); its type comes from the
    /// handler's [`Path`](crate::Path) extractor.
    ///
    /// ```
    /// let docs = plugin_api::Route::get("/items/{id}")
    ///     .path_param("id", "The item's id")
    ///     .docs();
    /// assert_eq!(docs["parameters"][0]["in"], "path");
    /// assert_eq!(docs["parameters"][0]["description"], "The item's id");
    /// ```
    pub fn path_param(mut self, name: &str, description: impl Into<String>) -> Self {
        let description = Value::String(description.into());
        match self.parameter_mut(name, "path") {
            Some(parameter) => parameter["description"] = description,
            None => self.set_parameter(json!({
                "name": name,
                "in": "path",
                "required": true,
                "description": description,
                "schema": { "type": "string" },
            })),
        }
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
        if let Some(description) = &self.success_description {
            // Declared, but no return type documented a body under it.
            let responses = docs
                .entry("responses")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(responses) = responses {
                responses
                    .entry(self.success.as_u16().to_string())
                    .or_insert_with(|| json!({ "description": description }));
            }
        }
        if !self.schemas.is_empty() {
            docs.insert(SCHEMAS_KEY.into(), Value::Object(self.schemas.clone()));
        }
        Value::Object(docs)
    }

    /// The method; `None` for [`Route::any`].
    ///
    /// ```
    /// use plugin_api::{http::Method, Route};
    /// assert_eq!(Route::get("/x").method(), Some(&Method::GET));
    /// ```
    pub fn method(&self) -> Option<&Method> {
        self.method.as_ref()
    }

    /// The path relative to the service prefix.
    ///
    /// ```
    /// assert_eq!(plugin_api::Route::get("/x").path(), "/x");
    /// ```
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The method as the host's router names it (`*` for every method).
    pub(crate) fn method_name(&self) -> &str {
        self.method.as_ref().map_or("*", Method::as_str)
    }

    pub(crate) fn docs_json(&self) -> String {
        if self.docs.is_empty() && self.schemas.is_empty() && self.success_description.is_none() {
            String::new()
        } else {
            self.docs().to_string()
        }
    }

    /// The names of the path's `{param}` and `{*param}` segments, in order.
    pub(crate) fn path_param_names(&self) -> Vec<&str> {
        self.path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| name.trim_start_matches('*'))
            .collect()
    }

    /// Documents the JSON request body as `T` is deserialized (by [`Json<T>`](crate::Json)),
    /// and the 400 a body that does not decode gets.
    pub(crate) fn document_request_body<T: JsonSchema + ?Sized>(&mut self) {
        let (schema, definitions) = schema_for::<T>(Contract::Deserialize, false);
        let mut body = json!({
            "required": true,
            "content": { "application/json": { "schema": schema } },
        });
        merge_schemas(&mut self.schemas, definitions, &mut [&mut body], "");
        self.docs.insert("requestBody".into(), body);
        self.document_bad_request("the body is not JSON of the expected shape");
    }

    /// Documents a success response that is not JSON: `media_type` with `schema`, under the
    /// route's success status.
    pub(crate) fn document_media_response(&mut self, media_type: &str, schema: Value) {
        let description = self.success_description();
        let response = json!({
            "description": description,
            "content": { media_type: { "schema": schema } },
        });
        self.set_response(self.success, response);
    }

    /// Documents a response without a body (`()` answers 204 whatever the route says).
    pub(crate) fn document_empty_response(&mut self, status: StatusCode) {
        let description = if status == self.success {
            self.success_description()
        } else {
            status.canonical_reason().unwrap_or("Success").to_owned()
        };
        self.set_response(status, json!({ "description": description }));
    }

    fn success_description(&self) -> String {
        match &self.success_description {
            Some(description) => description.clone(),
            None => self
                .success
                .canonical_reason()
                .unwrap_or("Success")
                .to_owned(),
        }
    }

    /// Documents the success response as `T` is serialized (by [`Json<T>`](crate::Json)).
    pub(crate) fn document_response<T: JsonSchema + ?Sized>(&mut self) {
        let description = self.success_description();
        self.add_response::<T>(Contract::Serialize, self.success, description);
    }

    /// Documents the query parameters: one per field of `T`, required unless it is an
    /// `Option` or has a default; field doc comments become their descriptions.
    pub(crate) fn document_query<T: JsonSchema + ?Sized>(&mut self) {
        let (schema, definitions) = schema_for::<T>(Contract::Deserialize, true);
        let mut parameters = match object_parameters(&schema, "query") {
            Some(parameters) => parameters,
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
        self.add_parameters(&mut parameters, definitions);
        self.document_bad_request("a query parameter is missing or not of its type");
    }

    /// Documents the path parameters' types: a struct's fields by name, a tuple's items by
    /// position, a single type for a single parameter.
    pub(crate) fn document_path<T: JsonSchema + ?Sized>(&mut self) {
        let (schema, definitions) = schema_for::<T>(Contract::Deserialize, true);
        let names: Vec<String> = self
            .path_param_names()
            .into_iter()
            .map(String::from)
            .collect();
        let mut parameters = object_parameters(&schema, "path").unwrap_or_else(|| {
            // A tuple: `prefixItems`, or `items` as an array in OpenAPI 3.0's dialect.
            let items = schema.get("prefixItems").or_else(|| schema.get("items"));
            let schemas: Vec<Value> = match items.and_then(Value::as_array) {
                Some(items) => items.clone(),
                None => vec![schema.clone()],
            };
            names
                .iter()
                .zip(schemas)
                .map(|(name, schema)| json!({"name": name, "in": "path", "schema": schema}))
                .collect()
        });
        for parameter in &mut parameters {
            // Every path parameter is required, whatever the type says.
            parameter["required"] = Value::Bool(true);
            let name = parameter["name"].as_str().unwrap_or_default().to_owned();
            let described = self
                .parameter_mut(&name, "path")
                .and_then(|existing| existing.get("description").cloned());
            if let (Some(description), Value::Object(parameter)) = (described, &mut *parameter) {
                parameter.entry("description").or_insert(description);
            }
        }
        self.add_parameters(&mut parameters, definitions);
        self.document_bad_request("a path parameter is not of its type");
    }

    /// Adds `refusal` to the 400 the extractors answer, whose description lists every one
    /// (path, query, body); a 400 the author declared is left as it is.
    fn document_bad_request(&mut self, refusal: &'static str) {
        let documented = self
            .docs
            .get("responses")
            .and_then(|responses| responses.get("400"))
            .is_some();
        if documented && self.refusals.is_empty() {
            return;
        }
        if !self.refusals.contains(&refusal) {
            self.refusals.push(refusal);
        }
        let description = format!(
            "The request is refused: {}; `field` names what is at fault",
            self.refusals.join("; or ")
        );
        self.add_response::<ErrorBody>(Contract::Serialize, StatusCode::BAD_REQUEST, description);
    }

    fn set_response(&mut self, status: StatusCode, response: Value) {
        let responses = self
            .docs
            .entry("responses")
            .or_insert_with(|| Value::Object(Map::new()));
        if !responses.is_object() {
            *responses = Value::Object(Map::new());
        }
        if let Value::Object(responses) = responses {
            responses.insert(status.as_u16().to_string(), response);
        }
    }

    fn add_response<T: JsonSchema + ?Sized>(
        &mut self,
        contract: Contract,
        status: StatusCode,
        description: String,
    ) {
        let (schema, definitions) = schema_for::<T>(contract, false);
        let mut response = json!({
            "description": description,
            "content": { "application/json": { "schema": schema } },
        });
        merge_schemas(&mut self.schemas, definitions, &mut [&mut response], "");
        self.set_response(status, response);
    }

    fn add_parameters(&mut self, parameters: &mut [Value], definitions: Map<String, Value>) {
        {
            let mut fragments: Vec<&mut Value> = parameters.iter_mut().collect();
            merge_schemas(&mut self.schemas, definitions, &mut fragments, "");
        }
        for parameter in parameters {
            self.set_parameter(parameter.take());
        }
    }

    fn parameter_mut(&mut self, name: &str, location: &str) -> Option<&mut Value> {
        self.docs
            .get_mut("parameters")?
            .as_array_mut()?
            .iter_mut()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name) && p["in"] == location)
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
}

/// One parameter per property of an object schema (`None` for any other schema), with the
/// property's description lifted to the parameter.
fn object_parameters(schema: &Value, location: &str) -> Option<Vec<Value>> {
    let properties = schema.get("properties")?.as_object()?;
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let parameters = properties
        .iter()
        .map(|(name, property)| {
            let mut property = property.clone();
            let description = property
                .as_object_mut()
                .and_then(|object| object.remove("description"));
            let mut parameter = json!({
                "name": name,
                "in": location,
                "required": required.contains(&name.as_str()),
                "schema": property,
            });
            if let Some(description) = description {
                parameter["description"] = description;
            }
            parameter
        })
        .collect();
    Some(parameters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Result;
    use schemars::JsonSchema;

    #[derive(serde::Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Paging {
        /// Most entries to return.
        limit: Option<u32>,
        key: String,
    }

    /// The route's docs once a handler of return type `R` documented itself.
    fn documented<R: crate::IntoResponse>(route: Route) -> Value {
        let mut route = route;
        R::document(&mut route);
        route.docs()
    }

    #[test]
    fn a_declared_status_is_documented_whatever_the_handler_returns() {
        let route = Route::delete("/x/{id}").status(StatusCode::NO_CONTENT, "Deleted");
        let docs = documented::<Result<StatusCode>>(route);
        assert_eq!(docs["responses"]["204"], json!({"description": "Deleted"}));
    }

    #[test]
    fn text_is_text_plain_and_nothing_is_a_204() {
        let docs = documented::<String>(Route::get("/t"));
        assert_eq!(
            docs["responses"]["200"]["content"],
            json!({"text/plain": {"schema": {"type": "string"}}})
        );
        let docs = documented::<Result<()>>(Route::post("/n"));
        assert_eq!(
            docs["responses"]["204"],
            json!({"description": "No Content"})
        );
    }

    #[test]
    fn the_400_names_every_part_an_extractor_can_refuse() {
        let mut route = Route::post("/r/{id}");
        route.document_path::<u32>();
        route.document_query::<Paging>();
        route.document_request_body::<Paging>();
        let description = route.docs()["responses"]["400"]["description"].clone();
        assert_eq!(
            description,
            "The request is refused: a path parameter is not of its type; or a query \
             parameter is missing or not of its type; or the body is not JSON of the expected \
             shape; `field` names what is at fault"
        );
        // One the author declared stays.
        let mut route =
            Route::post("/r").error_response(StatusCode::BAD_REQUEST, "Not a usable name");
        route.document_request_body::<Paging>();
        assert_eq!(
            route.docs()["responses"]["400"]["description"],
            "Not a usable name"
        );
    }

    #[test]
    fn query_parameters_come_from_the_type() {
        let mut route = Route::get("/items");
        route.document_query::<Paging>();
        let docs = route.docs();
        let limit = &docs["parameters"][0];
        assert_eq!(limit["name"], "limit");
        assert_eq!(limit["in"], "query");
        assert_eq!(limit["required"], false);
        assert_eq!(limit["description"], "Most entries to return.");
        assert_eq!(docs["parameters"][1]["required"], true);
        assert_eq!(
            docs["responses"]["400"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error"
        );
    }

    #[test]
    fn path_parameters_are_typed_by_position_or_alone() {
        let mut route = Route::get("/items/{group}/{id}").path_param("id", "The item");
        route.document_path::<(String, u32)>();
        let docs = route.docs();
        let id = docs["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "id")
            .unwrap();
        assert_eq!(id["schema"]["type"], "integer");
        assert_eq!(id["required"], true);
        assert_eq!(id["description"], "The item");

        let mut route = Route::get("/items/{id}");
        route.document_path::<u32>();
        assert_eq!(route.docs()["parameters"][0]["schema"]["type"], "integer");
    }

    #[test]
    fn the_response_goes_under_the_success_status() {
        let mut route = Route::post("/items").status(StatusCode::CREATED, "Made");
        route.document_response::<Vec<String>>();
        let docs = route.docs();
        assert_eq!(docs["responses"]["201"]["description"], "Made");
        assert_eq!(
            docs["responses"]["201"]["content"]["application/json"]["schema"]["type"],
            "array"
        );
    }

    #[test]
    fn path_param_names_in_order() {
        let route = Route::get("/a/{x}/b/{*rest}");
        assert_eq!(route.path_param_names(), ["x", "rest"]);
    }
}
