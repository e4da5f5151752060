//! The documentation of one built-in route, with schemas derived from the very types its
//! handler reads and answers (schemars, OpenAPI 3.0 flavour), so that the document cannot
//! describe one type while the route serves another.

use schemars::{
    generate::{Contract, SchemaSettings},
    JsonSchema,
};
use serde_json::{json, Map, Value};

/// A built-in route's OpenAPI operation and the named schemas it refers to.
pub struct Operation {
    pub methods: Vec<&'static str>,
    pub path: String,
    pub docs: Map<String, Value>,
    pub schemas: Map<String, Value>,
}

impl Operation {
    /// The route at `path` (relative to the prefix) under `methods` (OpenAPI's, lower case).
    pub fn new(methods: &[&'static str], path: impl Into<String>) -> Self {
        Operation {
            methods: methods.to_vec(),
            path: path.into(),
            docs: Map::new(),
            schemas: Map::new(),
        }
    }

    pub fn tag(mut self, tag: &str) -> Self {
        self.docs.insert("tags".into(), json!([tag]));
        self
    }

    pub fn summary(mut self, text: &str) -> Self {
        self.docs.insert("summary".into(), json!(text));
        self
    }

    pub fn description(mut self, text: &str) -> Self {
        self.docs.insert("description".into(), json!(text));
        self
    }

    /// The JSON request body: `T` as the handler reads it.
    pub fn request_body<T: JsonSchema>(mut self) -> Self {
        let schema = self.schema::<T>(Contract::Deserialize);
        self.docs.insert(
            "requestBody".into(),
            json!({
                "required": true,
                "content": { "application/json": { "schema": schema } },
            }),
        );
        self
    }

    /// A JSON answer with `status`: `T` as the handler writes it.
    pub fn json_response<T: JsonSchema>(mut self, status: u16, description: &str) -> Self {
        let schema = self.schema::<T>(Contract::Serialize);
        self.response(
            status,
            json!({
                "description": description,
                "content": { "application/json": { "schema": schema } },
            }),
        )
    }

    /// A body of `media_type` that is a string (text, HTML, a file).
    pub fn string_response(self, status: u16, media_type: &str, description: &str) -> Self {
        self.response(
            status,
            json!({
                "description": description,
                "content": { media_type: { "schema": { "type": "string" } } },
            }),
        )
    }

    /// The host's `"<code>: <reason>"` text answer.
    pub fn text_response(self, status: u16, description: &str) -> Self {
        self.string_response(status, "text/plain", description)
    }

    /// An answer without a body schema.
    pub fn empty_response(self, status: u16, description: &str) -> Self {
        self.response(status, json!({ "description": description }))
    }

    /// Describes the path parameter `{name}`.
    pub fn path_param(mut self, name: &str, description: &str) -> Self {
        let parameters = self.docs.entry("parameters").or_insert_with(|| json!([]));
        if let Value::Array(parameters) = parameters {
            parameters.push(json!({
                "name": name,
                "in": "path",
                "required": true,
                "description": description,
                "schema": { "type": "string" },
            }));
        }
        self
    }

    fn response(mut self, status: u16, response: Value) -> Self {
        let responses = self.docs.entry("responses").or_insert_with(|| json!({}));
        if let Value::Object(responses) = responses {
            responses.insert(status.to_string(), response);
        }
        self
    }

    /// `T`'s schema (a reference for a named type) under `contract`; its named schemas join
    /// the operation's. The host's types are each read or written, never both, so one
    /// contract per type suffices.
    fn schema<T: JsonSchema>(&mut self, contract: Contract) -> Value {
        let settings = SchemaSettings::openapi3().with(|settings| settings.contract = contract);
        let mut generator = settings.into_generator();
        let mut schema = generator.subschema_for::<T>();
        for transform in generator.transforms_mut() {
            transform.transform(&mut schema);
        }
        self.schemas.extend(generator.take_definitions(true));
        schema.to_value()
    }
}
