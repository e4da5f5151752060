//! How a route's documentation carries its schemas to the host, and how schemas from many
//! routes and plugins are merged into one `components/schemas` object without one silently
//! replacing another.
//!
//! A route's documentation crosses the boundary as JSON (an OpenAPI operation object); this is
//! the part of that contract both sides must apply alike: the SDK merges the schemas of one
//! route with these rules, the host those of every route and plugin.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};

/// The key of a route's documentation that carries the named schemas its `$ref`s point to.
/// An `x-` key is a valid OpenAPI extension, so the fragment stays a valid operation object;
/// the host moves these schemas to the document's `components/schemas`.
///
/// ```
/// assert_eq!(plugin_abi::openapi::SCHEMAS_KEY, "x-schemas");
/// ```
pub const SCHEMAS_KEY: &str = "x-schemas";

/// What every schema reference of the document starts with.
///
/// ```
/// assert_eq!(plugin_abi::openapi::SCHEMA_REF_PREFIX, "#/components/schemas/");
/// ```
pub const SCHEMA_REF_PREFIX: &str = "#/components/schemas/";

/// Appended to the name of a type's form as it is read (request bodies, query strings),
/// when serde reads the type differently from how it writes it.
pub const INPUT_SUFFIX: &str = "-Input";
/// Appended to the name of a type's form as it is written (response bodies), when serde
/// writes the type differently from how it reads it.
pub const OUTPUT_SUFFIX: &str = "-Output";

/// The names of a document's schemas to use without their form suffix: `X-Output` (or
/// `X-Input`) becomes `X` when the document has neither the other form nor a plain `X`.
/// A suffix then always means "this type has another form, and the document shows it too";
/// a type used one way only is named after the type, as a reader expects.
///
/// ```
/// use plugin_abi::openapi::plain_names;
///
/// let names = ["Reading-Output", "Setpoint-Input", "Setpoint-Output", "Log-Input", "Log"];
/// let renames = plain_names(names.iter().copied());
/// assert_eq!(renames.get("Reading-Output").map(String::as_str), Some("Reading"));
/// assert_eq!(renames.len(), 1, "both forms shown, or the plain name taken: kept");
/// ```
pub fn plain_names<'a>(names: impl Iterator<Item = &'a str> + Clone) -> BTreeMap<String, String> {
    let present: HashSet<&str> = names.clone().collect();
    let mut renames = BTreeMap::new();
    for name in names {
        for (mine, theirs) in [(OUTPUT_SUFFIX, INPUT_SUFFIX), (INPUT_SUFFIX, OUTPUT_SUFFIX)] {
            let Some(base) = name.strip_suffix(mine) else {
                continue;
            };
            let other = format!("{base}{theirs}");
            if !base.is_empty() && !present.contains(base) && !present.contains(other.as_str()) {
                renames.insert(name.to_owned(), base.to_owned());
            }
        }
    }
    renames
}

/// Whether `name` may be a key of `components/schemas` (OpenAPI: `^[a-zA-Z0-9.\-_]+$`).
///
/// ```
/// use plugin_abi::openapi::is_component_name;
///
/// assert!(is_component_name("device-plugin.State"));
/// assert!(!is_component_name("Wrapper<State>"));
/// assert!(!is_component_name(""));
/// ```
pub fn is_component_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// `name` with every character a component name may not have replaced by `_` (`Schema` for
/// an empty one). The host names the schemas of its document with it too.
///
/// ```
/// assert_eq!(plugin_abi::openapi::sanitize("Wrapper<State>"), "Wrapper_State_");
/// ```
pub fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "Schema".to_owned()
    } else {
        cleaned
    }
}

/// The `attempt`-th name tried for a schema called `name`: the name itself, then the name
/// under `namespace` (`namespace.Name`), then numbered.
fn candidate(name: &str, namespace: &str, attempt: usize) -> String {
    let base = sanitize(name);
    let namespace = sanitize(namespace);
    match (attempt, namespace.is_empty() || namespace == "Schema") {
        (0, _) => base,
        (n, true) => format!("{base}_{}", n + 1),
        (1, false) => format!("{namespace}.{base}"),
        (n, false) => format!("{namespace}.{base}_{n}"),
    }
}

/// A name as it appears in a `$ref` (JSON Pointer in a URI fragment), as schemars writes it.
fn encode_ref_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        match byte {
            b'~' => out.push_str("~0"),
            b'/' => out.push_str("~1"),
            b'!' | b'$' | b'&'..=b';' | b'=' | b'?'..=b'Z' | b'_' | b'a'..=b'z' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Replaces every `"$ref"` string found in `refs` throughout `value`.
pub fn rewrite_refs(value: &mut Value, refs: &BTreeMap<String, String>) {
    match value {
        Value::Object(object) => {
            for (key, item) in object.iter_mut() {
                match item {
                    Value::String(target) if key == "$ref" => {
                        if let Some(new) = refs.get(target.as_str()) {
                            *target = new.clone();
                        }
                    }
                    _ => rewrite_refs(item, refs),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rewrite_refs(item, refs)),
        _ => {}
    }
}

/// Old `$ref` → new `$ref` for a renaming of schemas.
pub fn ref_map(renames: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut refs = BTreeMap::new();
    for (old, new) in renames {
        let new_ref = format!("{SCHEMA_REF_PREFIX}{}", encode_ref_name(new));
        refs.insert(
            format!("{SCHEMA_REF_PREFIX}{}", encode_ref_name(old)),
            new_ref.clone(),
        );
        refs.insert(format!("{SCHEMA_REF_PREFIX}{old}"), new_ref);
    }
    refs
}

/// Merges the named schemas `incoming` into `components`, and points the `$ref`s of
/// `incoming` and of `fragments` (the documentation that uses them) at where they ended up.
///
/// A schema keeps its name when `components` does not have it yet or has exactly the same
/// schema under it; otherwise it is renamed, never overwriting: first to
/// `<namespace>.<Name>` (e.g. `device-plugin.State`), then numbered. A schema whose
/// references were renamed differs from the one it would share a name with, so it is
/// renamed too. Names that OpenAPI does not allow (`Wrapper<T>`) are made valid.
///
/// ```
/// use plugin_abi::openapi::merge_schemas;
/// use serde_json::{json, Map, Value};
///
/// let mut components = Map::new();
/// components.insert("State".into(), json!({"type": "string"}));
///
/// let incoming: Map<String, Value> =
///     serde_json::from_value(json!({"State": {"type": "number"}})).unwrap();
/// let mut operation = json!({"schema": {"$ref": "#/components/schemas/State"}});
/// merge_schemas(&mut components, incoming, &mut [&mut operation], "my-plugin");
///
/// assert_eq!(components["State"], json!({"type": "string"}));
/// assert_eq!(components["my-plugin.State"], json!({"type": "number"}));
/// assert_eq!(operation["schema"]["$ref"], "#/components/schemas/my-plugin.State");
/// ```
pub fn merge_schemas(
    components: &mut Map<String, Value>,
    incoming: Map<String, Value>,
    fragments: &mut [&mut Value],
    namespace: &str,
) {
    if incoming.is_empty() {
        return;
    }
    let names: Vec<String> = incoming.keys().cloned().collect();
    let mut attempts: Vec<usize> = vec![0; names.len()];
    let mut renames: BTreeMap<String, String> = names
        .iter()
        .map(|name| (name.clone(), candidate(name, namespace, 0)))
        .collect();
    // Renaming only ever moves a schema to a later candidate, and the first schema in
    // order only yields to `components` (finite), the second to that and the first, …:
    // this ends.
    let rewritten = loop {
        let refs = ref_map(&renames);
        let mut changed = false;
        let mut claimed: HashSet<String> = HashSet::new();
        let mut rewritten: Vec<(String, Value)> = Vec::with_capacity(names.len());
        for (index, name) in names.iter().enumerate() {
            let mut value = incoming[name].clone();
            rewrite_refs(&mut value, &refs);
            let target = renames[name].clone();
            let fits = !claimed.contains(&target)
                && components
                    .get(&target)
                    .is_none_or(|existing| *existing == value);
            if fits {
                claimed.insert(target.clone());
                rewritten.push((target, value));
            } else {
                attempts[index] += 1;
                renames.insert(name.clone(), candidate(name, namespace, attempts[index]));
                changed = true;
            }
        }
        if !changed {
            break rewritten;
        }
    };
    for (target, value) in rewritten {
        components.entry(target).or_insert(value);
    }
    let refs = ref_map(&renames);
    for fragment in fragments.iter_mut() {
        rewrite_refs(fragment, &refs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn identical_schemas_are_shared() {
        let mut components = map(json!({"A": {"type": "string"}}));
        let mut fragment = json!({"$ref": "#/components/schemas/A"});
        merge_schemas(
            &mut components,
            map(json!({"A": {"type": "string"}})),
            &mut [&mut fragment],
            "p",
        );
        assert_eq!(components.len(), 1);
        assert_eq!(fragment["$ref"], "#/components/schemas/A");
    }

    #[test]
    fn a_renamed_reference_renames_its_users() {
        // Same `Outer` text, but its `Inner` differs from the existing one.
        let mut components = map(json!({
            "Outer": {"properties": {"x": {"$ref": "#/components/schemas/Inner"}}},
            "Inner": {"type": "string"},
        }));
        let mut fragment = json!({"$ref": "#/components/schemas/Outer"});
        merge_schemas(
            &mut components,
            map(json!({
                "Outer": {"properties": {"x": {"$ref": "#/components/schemas/Inner"}}},
                "Inner": {"type": "number"},
            })),
            &mut [&mut fragment],
            "p",
        );
        assert_eq!(components["p.Inner"], json!({"type": "number"}));
        assert_eq!(
            components["p.Outer"]["properties"]["x"]["$ref"],
            "#/components/schemas/p.Inner"
        );
        assert_eq!(fragment["$ref"], "#/components/schemas/p.Outer");
        assert_eq!(components["Inner"], json!({"type": "string"}));
    }

    #[test]
    fn repeated_collisions_are_numbered_and_names_made_valid() {
        let mut components = map(json!({
            "A": {"type": "string"},
            "p.A": {"type": "boolean"},
        }));
        let mut fragment = json!([{"$ref": "#/components/schemas/A"},
                                  {"$ref": "#/components/schemas/W%3CT%3E"}]);
        merge_schemas(
            &mut components,
            map(json!({"A": {"type": "number"}, "W<T>": {"type": "array"}})),
            &mut [&mut fragment],
            "p",
        );
        assert_eq!(components["p.A_2"], json!({"type": "number"}));
        assert_eq!(components["W_T_"], json!({"type": "array"}));
        assert_eq!(fragment[0]["$ref"], "#/components/schemas/p.A_2");
        assert_eq!(fragment[1]["$ref"], "#/components/schemas/W_T_");
    }

    #[test]
    fn without_namespace_names_are_numbered() {
        let mut components = map(json!({"A": {"type": "string"}}));
        let mut fragment = json!({"$ref": "#/components/schemas/A"});
        merge_schemas(
            &mut components,
            map(json!({"A": {"type": "number"}})),
            &mut [&mut fragment],
            "",
        );
        assert_eq!(components["A_2"], json!({"type": "number"}));
        assert_eq!(fragment["$ref"], "#/components/schemas/A_2");
    }
}
