//! The OpenAPI pieces of the SDK: the schema of a Rust type, and (re-exported from the ABI
//! crate, so that the host assembles the document with the very same rules) how a route's
//! schemas travel in its documentation and how schemas are merged.
//!
//! Plugin authors do not need this module: [`Route`](crate::Route)'s builder methods use it.

use schemars::{
    generate::{Contract, SchemaSettings},
    JsonSchema,
};
use serde_json::{Map, Value};

pub use crate::abi::openapi::{is_component_name, merge_schemas, SCHEMAS_KEY, SCHEMA_REF_PREFIX};

/// The schema of `T` for OpenAPI 3.0 and the named schemas it refers to.
///
/// `contract` is `Deserialize` for what the route reads (request body, query) and
/// `Serialize` for what it answers; `inline` puts `T`'s own schema inline rather than
/// behind a `$ref` (needed to split a query struct into parameters).
pub(crate) fn schema_for<T: JsonSchema + ?Sized>(
    contract: Contract,
    inline: bool,
) -> (Value, Map<String, Value>) {
    let settings = SchemaSettings::openapi3().with(|settings| {
        settings.contract = contract;
        settings.inline_subschemas = inline;
    });
    let mut generator = settings.into_generator();
    let mut schema = generator.subschema_for::<T>();
    for transform in generator.transforms_mut() {
        transform.transform(&mut schema);
    }
    let definitions = generator.take_definitions(true);
    (schema.to_value(), definitions)
}
