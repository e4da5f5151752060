//! The OpenAPI pieces of the SDK: how a route's schemas travel in its documentation, how a
//! type's schema is named, and how the schemas of one route's types are merged into one
//! object without one silently replacing another.
//!
//! Plugin authors do not need this module: [`Route`](crate::Route)'s builder methods use it.
//!
//! # Schema names
//!
//! A type's schema is named after the type (schemars' name: `Reading`, `Wrapper_for_State`
//! for generics). A type that serde reads and writes differently (a `default` field is
//! optional in a request and always present in an answer; `skip_serializing_if`, `rename`
//! by direction, …) has two schemas: `Reading-Input` as it is read ([`INPUT_SUFFIX`]) and
//! `Reading-Output` as it is written ([`OUTPUT_SUFFIX`]), whichever of them a route uses.
//! In the service's document, a suffixed name whose other form the document does not show
//! loses its suffix (a response type that also derives `Deserialize` is `Reading`, not
//! `Reading-Output`), so a suffix always comes with its counterpart. The host qualifies a
//! name that different plugins use for different schemas (`<plugin>.<Name>`; see "API documentation" in
//! `docs/writing-plugins.md`).

mod forms;

pub use forms::{INPUT_SUFFIX, OUTPUT_SUFFIX};

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
/// behind a `$ref` (needed to split a query struct into parameters). A named type whose
/// schema differs under the other contract is named with the suffix of this one (see the
/// [module docs](self)), so that one name never stands for two schemas.
pub(crate) fn schema_for<T: JsonSchema + ?Sized>(
    contract: Contract,
    inline: bool,
) -> (Value, Map<String, Value>) {
    let their_suffix = forms::suffix(&forms::opposite(&contract));
    let my_suffix = forms::suffix(&contract);
    let (_, theirs) = generate::<T>(forms::opposite(&contract), inline);
    let (mut schema, mine) = generate::<T>(contract, inline);
    let renames = forms::split_forms(&mine, &theirs, my_suffix, their_suffix);
    let definitions = forms::apply(&mut schema, mine, &renames);
    (schema, definitions)
}

/// `T`'s schema and definitions under one contract, OpenAPI 3.0 flavoured.
fn generate<T: JsonSchema + ?Sized>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Read and written alike.
    #[derive(serde::Serialize, serde::Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Same {
        value: f64,
    }

    /// Optional when read, always written.
    #[derive(serde::Serialize, serde::Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Reading {
        #[serde(default)]
        value: f64,
    }

    /// Its own fields read and write alike; its `Reading` does not.
    #[derive(serde::Serialize, serde::Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Log {
        readings: Vec<Reading>,
        same: Same,
    }

    fn reference(schema: &Value) -> &str {
        schema["$ref"].as_str().unwrap()
    }

    #[test]
    fn a_type_read_and_written_alike_has_one_name() {
        let (read, read_defs) = schema_for::<Same>(Contract::Deserialize, false);
        let (written, written_defs) = schema_for::<Same>(Contract::Serialize, false);
        assert_eq!(reference(&read), "#/components/schemas/Same");
        assert_eq!(read, written);
        assert_eq!(read_defs, written_defs);
    }

    #[test]
    fn a_type_read_and_written_differently_has_one_name_per_form() {
        let (read, read_defs) = schema_for::<Reading>(Contract::Deserialize, false);
        let (written, written_defs) = schema_for::<Reading>(Contract::Serialize, false);
        assert_eq!(reference(&read), "#/components/schemas/Reading-Input");
        assert_eq!(reference(&written), "#/components/schemas/Reading-Output");
        assert!(read_defs["Reading-Input"].get("required").is_none());
        assert_eq!(written_defs["Reading-Output"]["required"], json!(["value"]));
        assert_eq!(read_defs.len(), 1);

        // Both forms in one route: two names, neither numbered.
        let mut components = Map::new();
        let (mut a, mut b) = (read, written);
        merge_schemas(&mut components, read_defs, &mut [&mut a], "");
        merge_schemas(&mut components, written_defs, &mut [&mut b], "");
        let mut names: Vec<&String> = components.keys().collect();
        names.sort();
        assert_eq!(names, ["Reading-Input", "Reading-Output"]);
    }

    #[test]
    fn a_type_containing_a_split_type_is_split_too() {
        let (written, defs) = schema_for::<Log>(Contract::Serialize, false);
        assert_eq!(reference(&written), "#/components/schemas/Log-Output");
        assert_eq!(
            defs["Log-Output"]["properties"]["readings"]["items"]["$ref"],
            "#/components/schemas/Reading-Output"
        );
        assert_eq!(
            defs["Log-Output"]["properties"]["same"]["$ref"],
            "#/components/schemas/Same"
        );
        let mut names: Vec<&String> = defs.keys().collect();
        names.sort();
        assert_eq!(names, ["Log-Output", "Reading-Output", "Same"]);

        // Inline (a query struct): its own schema is not named, its fields' types are.
        let (query, defs) = schema_for::<Log>(Contract::Deserialize, true);
        assert!(query.get("$ref").is_none());
        assert_eq!(
            query["properties"]["readings"]["items"]["type"], "object",
            "inline schemas inline every field: {query}"
        );
        assert!(defs.is_empty());
    }
}
