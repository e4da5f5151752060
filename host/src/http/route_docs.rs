//! The documentation of the host's own routes, built the way a plugin's `plugin_api::Route`
//! builds its own: an OpenAPI operation object plus the named schemas it refers to under
//! [`SCHEMAS_KEY`], merged with the ABI crate's rules. The host does not link the SDK, so this
//! is the small part of that builder it needs.

use plugin_abi::openapi::{merge_schemas, SCHEMAS_KEY};
use schemars::{
    generate::{Contract, SchemaSettings},
    JsonSchema,
};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// The JSON error body `{"error", "field"}`: the one the SDK answers for a plugin's errors,
/// and the one the host answers a bad `/_debug` body with. Its schema must stay identical to
/// the SDK's (`Route::error_response`), so that the document shares one `Error` schema rather
/// than renaming a plugin's (the OpenAPI integration test checks it).
#[derive(Serialize, JsonSchema)]
#[serde(rename = "Error")]
#[schemars(
    description = "The JSON body of an error the SDK answers (see [`Error`](crate::Error))."
)]
#[allow(dead_code)] // only its schema is used
struct ErrorBody {
    /// What went wrong.
    error: String,
    /// The input field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

/// One host route's path and documentation.
pub struct Route {
    path: String,
    docs: Map<String, Value>,
    /// Named schemas the docs refer to (`#/components/schemas/<name>`).
    schemas: Map<String, Value>,
}

impl Route {
    /// A `GET` route at `path` (relative to the service prefix). The method is only a label
    /// here: the document's caller says under which methods the route is listed.
    pub fn get(path: impl Into<String>) -> Self {
        Route {
            path: path.into(),
            docs: Map::new(),
            schemas: Map::new(),
        }
    }

    /// A `POST` route at `path`.
    pub fn post(path: impl Into<String>) -> Self {
        Route::get(path)
    }

    pub fn summary(mut self, text: &str) -> Self {
        self.docs.insert("summary".into(), text.into());
        self
    }

    pub fn description(mut self, text: &str) -> Self {
        self.docs.insert("description".into(), text.into());
        self
    }

    /// Adds a tag, grouping the route in the UI.
    pub fn tag(mut self, tag: &str) -> Self {
        let tags = self.docs.entry("tags").or_insert_with(|| json!([]));
        if let Value::Array(tags) = tags {
            tags.push(tag.into());
        }
        self
    }

    /// The JSON request body, its schema derived from `T` as it is deserialized.
    pub fn request_body<T: JsonSchema>(mut self) -> Self {
        let (schema, definitions) = schema_for::<T>(Contract::Deserialize);
        let mut body = json!({
            "required": true,
            "content": { "application/json": { "schema": schema } },
        });
        merge_schemas(&mut self.schemas, definitions, &mut [&mut body], "");
        self.docs.insert("requestBody".into(), body);
        self
    }

    /// A JSON response with `status`, its schema derived from `T` as it is serialized.
    pub fn response<T: JsonSchema>(mut self, status: u16, description: &str) -> Self {
        let (schema, definitions) = schema_for::<T>(Contract::Serialize);
        let mut response = json!({
            "description": description,
            "content": { "application/json": { "schema": schema } },
        });
        merge_schemas(&mut self.schemas, definitions, &mut [&mut response], "");
        let responses = self.docs.entry("responses").or_insert_with(|| json!({}));
        if let Value::Object(responses) = responses {
            responses.insert(status.to_string(), response);
        }
        self
    }

    /// An error response with `status` and the `{"error", "field"}` body.
    pub fn error_response(self, status: u16, description: &str) -> Self {
        self.response::<ErrorBody>(status, description)
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

    /// The operation object, with the named schemas under [`SCHEMAS_KEY`].
    pub fn docs(&self) -> Value {
        let mut docs = self.docs.clone();
        if !self.schemas.is_empty() {
            docs.insert(SCHEMAS_KEY.into(), Value::Object(self.schemas.clone()));
        }
        Value::Object(docs)
    }

    /// The path relative to the service prefix.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// The OpenAPI 3.0 schema of `T` (behind a `$ref` when it is named) and the named schemas it
/// refers to; schemars' settings as the SDK's.
fn schema_for<T: JsonSchema>(contract: Contract) -> (Value, Map<String, Value>) {
    let settings = SchemaSettings::openapi3().with(|settings| settings.contract = contract);
    let mut generator = settings.into_generator();
    let mut schema = generator.subschema_for::<T>();
    for transform in generator.transforms_mut() {
        transform.transform(&mut schema);
    }
    let definitions = generator.take_definitions(true);
    (schema.to_value(), definitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_type_becomes_a_named_schema() {
        let docs = Route::get("/x")
            .tag("T")
            .summary("s")
            .error_response(400, "bad")
            .docs();
        let schema = &docs["responses"]["400"]["content"]["application/json"]["schema"];
        assert_eq!(schema["$ref"], "#/components/schemas/Error");
        assert_eq!(docs[SCHEMAS_KEY]["Error"]["required"], json!(["error"]));
        assert_eq!(docs["tags"], json!(["T"]));
        assert_eq!(docs["summary"], "s");
    }

    #[test]
    fn a_path_parameter_is_required_text() {
        let docs = Route::get("/f/{file}").path_param("file", "d").docs();
        assert_eq!(
            docs["parameters"][0],
            json!({"name": "file", "in": "path", "required": true, "description": "d",
                   "schema": {"type": "string"}})
        );
    }
}
