//! The names of the document's schemas (`components/schemas`), from the schemas each route
//! brings along.
//!
//! Every route arrives with its own named schemas (a plugin route under the SDK's
//! `x-schemas` key, a built-in route from the host's types). The rule, the same whatever
//! order plugins or routes come in:
//!
//! - Schemas that are the same (same name, same text, and their references lead to the same
//!   schemas) are one schema, whoever declared them.
//! - A name that stands for one schema keeps it: `Reading`.
//! - A name that stands for different schemas is qualified with the plugin that declares
//!   each: `fermenter-log.Reading`, `history-plugin.Reading` (plugin names have no `.`, type
//!   names neither). The host's built-in schemas keep their names; a plugin schema that clashes
//!   with one is qualified. The very same schema declared by several plugins is qualified
//!   with the first of them in load order. A plugin that itself has two schemas under one name
//!   gets them numbered: `p.Reading`, `p.Reading_2`.
//!
//! Sameness is decided by partition refinement: schemas start grouped by name and text (with
//! their references blanked), and groups are split until every member of a group refers to
//! the same groups, so that two `Outer`s whose `Inner`s differ are two schemas.

use std::collections::{BTreeMap, HashMap};

use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

/// The key of a plugin route's documentation carrying its named schemas, and what every
/// schema reference starts with: part of the ABI's contract, so written once, there.
pub use plugin_abi::openapi::{SCHEMAS_KEY, SCHEMA_REF_PREFIX};

use plugin_abi::openapi::sanitize;

/// Who declared a route's schemas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Host,
    Plugin(String),
}

/// One schema of one route.
struct Entity {
    route: usize,
    name: String,
    value: Value,
    /// The text with every reference blanked, keys sorted.
    skeleton: String,
    /// What each reference points to, in the skeleton's order.
    targets: Vec<Target>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Target {
    Entity(usize),
    /// A reference to nothing the route declared; kept as it is.
    Other(String),
}

/// The names of the document: `components/schemas`, and what each route's references
/// become.
pub struct Named {
    pub components: Map<String, Value>,
    /// Per route: reference → entity.
    lookups: Vec<HashMap<String, usize>>,
    /// Per entity: its reference in the document.
    refs: Vec<String>,
}

impl Named {
    /// What `reference`, in the documentation of the `route`-th route, becomes; `None` for
    /// a reference to nothing the route declared.
    pub fn new_ref(&self, route: usize, reference: &str) -> Option<String> {
        let index = resolve(self.lookups.get(route)?, reference)?;
        Some(self.refs[index].clone())
    }
}

/// Names every route's schemas (`routes`: the owner and the route's named schemas).
pub fn name_schemas(routes: &[(Owner, Map<String, Value>)]) -> Named {
    let (entities, lookups) = entities(routes);
    let classes = refine(&entities);
    let names = class_names(&entities, &classes, routes);
    let refs: Vec<String> = classes
        .iter()
        .map(|&class| format!("{SCHEMA_REF_PREFIX}{}", names[class]))
        .collect();
    let mut components = Map::new();
    for (index, entity) in entities.iter().enumerate() {
        let name = &names[classes[index]];
        if components.contains_key(name) {
            continue;
        }
        let mut value = entity.value.clone();
        let lookup = &lookups[entity.route];
        rewrite_refs(&mut value, &|reference| {
            resolve(lookup, reference).map(|target| refs[target].clone())
        });
        components.insert(name.clone(), value);
    }
    Named {
        components,
        lookups,
        refs,
    }
}

/// Every route's schemas, and for each route its references → entity.
fn entities(routes: &[(Owner, Map<String, Value>)]) -> (Vec<Entity>, Vec<HashMap<String, usize>>) {
    let mut entities = Vec::new();
    let mut lookups = Vec::with_capacity(routes.len());
    for (route, (_, schemas)) in routes.iter().enumerate() {
        let mut lookup = HashMap::new();
        for (name, value) in schemas {
            lookup.insert(format!("{SCHEMA_REF_PREFIX}{name}"), entities.len());
            entities.push(Entity {
                route,
                name: sanitize(name),
                value: value.clone(),
                skeleton: String::new(),
                targets: Vec::new(),
            });
        }
        lookups.push(lookup);
    }
    for entity in &mut entities {
        let lookup = &lookups[entity.route];
        let mut skeleton = String::new();
        let mut targets = Vec::new();
        canonical(&entity.value, &mut skeleton, &mut |reference| {
            targets.push(match resolve(lookup, reference) {
                Some(index) => Target::Entity(index),
                None => Target::Other(reference.to_owned()),
            })
        });
        entity.skeleton = skeleton;
        entity.targets = targets;
    }
    (entities, lookups)
}

/// The entity a reference names: as written, or percent-decoded (schemars encodes names
/// such as `Wrapper<T>` in references).
fn resolve(lookup: &HashMap<String, usize>, reference: &str) -> Option<usize> {
    lookup.get(reference).copied().or_else(|| {
        let name = reference.strip_prefix(SCHEMA_REF_PREFIX)?;
        let decoded = percent_decode_str(name).decode_utf8().ok()?;
        let decoded = decoded.replace("~1", "/").replace("~0", "~");
        lookup
            .get(&format!("{SCHEMA_REF_PREFIX}{decoded}"))
            .copied()
    })
}

/// Groups the entities into classes of the same schema (see the module docs); the class of
/// each entity, numbered in order of first appearance.
fn refine(entities: &[Entity]) -> Vec<usize> {
    let mut ids: HashMap<(&str, &str), usize> = HashMap::new();
    let mut classes: Vec<usize> = entities
        .iter()
        .map(|e| {
            let next = ids.len();
            *ids.entry((&e.name, &e.skeleton)).or_insert(next)
        })
        .collect();
    let mut count = ids.len();
    // Each round either splits a class or ends; there are at most `entities.len()` classes.
    loop {
        // A reference to an entity counts by the entity's class.
        let mut ids: HashMap<(usize, Vec<Target>), usize> = HashMap::new();
        let refined: Vec<usize> = entities
            .iter()
            .enumerate()
            .map(|(index, entity)| {
                let targets = entity
                    .targets
                    .iter()
                    .map(|target| match target {
                        Target::Entity(t) => Target::Entity(classes[*t]),
                        other => other.clone(),
                    })
                    .collect();
                let next = ids.len();
                *ids.entry((classes[index], targets)).or_insert(next)
            })
            .collect();
        classes = refined;
        if ids.len() == count {
            return classes;
        }
        count = ids.len();
    }
}

/// The name of each class (see the module docs).
fn class_names(
    entities: &[Entity],
    classes: &[usize],
    routes: &[(Owner, Map<String, Value>)],
) -> Vec<String> {
    let count = classes.iter().max().map_or(0, |max| max + 1);
    // The first entity of each class: its name and owner.
    let mut first: Vec<Option<usize>> = vec![None; count];
    for (index, &class) in classes.iter().enumerate() {
        first[class].get_or_insert(index);
    }
    let mut per_name: HashMap<&str, usize> = HashMap::new();
    for entity in first.iter().flatten().map(|&index| &entities[index]) {
        *per_name.entry(&entity.name).or_default() += 1;
    }
    let mut taken: BTreeMap<String, ()> = BTreeMap::new();
    let mut names = Vec::with_capacity(count);
    for index in first.iter().flatten() {
        let entity = &entities[*index];
        let base = match &routes[entity.route].0 {
            Owner::Plugin(plugin) if per_name[entity.name.as_str()] > 1 => {
                format!("{plugin}.{}", entity.name)
            }
            _ => entity.name.clone(),
        };
        let mut name = base.clone();
        let mut number = 1;
        while taken.contains_key(&name) {
            number += 1;
            name = format!("{base}_{number}");
        }
        taken.insert(name.clone(), ());
        names.push(name);
    }
    names
}

/// `value` as text with keys sorted and every `$ref` blanked; `on_ref` sees the references
/// in that order.
fn canonical(value: &Value, out: &mut String, on_ref: &mut dyn FnMut(&str)) {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            out.push('{');
            for key in keys {
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                match &object[key] {
                    Value::String(reference) if key == "$ref" => {
                        on_ref(reference);
                        out.push_str("\"\"");
                    }
                    item => canonical(item, out, on_ref),
                }
                out.push(',');
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for item in items {
                canonical(item, out, on_ref);
                out.push(',');
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Replaces every `"$ref"` that `new_ref` knows throughout `value`.
pub fn rewrite_refs(value: &mut Value, new_ref: &dyn Fn(&str) -> Option<String>) {
    match value {
        Value::Object(object) => {
            for (key, item) in object.iter_mut() {
                match item {
                    Value::String(target) if key == "$ref" => {
                        if let Some(new) = new_ref(target) {
                            *target = new;
                        }
                    }
                    _ => rewrite_refs(item, new_ref),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| rewrite_refs(item, new_ref)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(owner: &str, schemas: Value) -> (Owner, Map<String, Value>) {
        let owner = match owner {
            "host" => Owner::Host,
            plugin => Owner::Plugin(plugin.to_owned()),
        };
        (owner, schemas.as_object().unwrap().clone())
    }

    fn names(named: &Named) -> Vec<&str> {
        let mut names: Vec<&str> = named.components.keys().map(String::as_str).collect();
        names.sort();
        names
    }

    fn new_ref(named: &Named, route: usize, name: &str) -> String {
        named
            .new_ref(route, &format!("{SCHEMA_REF_PREFIX}{name}"))
            .unwrap()
    }

    #[test]
    fn the_same_schema_is_one_schema_whoever_declares_it() {
        let reading = json!({"Reading": {"type": "number"}});
        let named = name_schemas(&[
            route("a", reading.clone()),
            route("a", reading.clone()),
            route("b", reading),
        ]);
        assert_eq!(names(&named), ["Reading"]);
        for route in 0..3 {
            assert_eq!(
                new_ref(&named, route, "Reading"),
                "#/components/schemas/Reading"
            );
        }
    }

    #[test]
    fn a_name_two_plugins_use_differently_is_qualified_for_both_in_any_order() {
        let a = route("fermenter-log", json!({"Reading": {"type": "number"}}));
        let b = route("history-plugin", json!({"Reading": {"type": "string"}}));
        for routes in [[a.clone(), b.clone()], [b, a]] {
            let named = name_schemas(&routes);
            assert_eq!(
                names(&named),
                ["fermenter-log.Reading", "history-plugin.Reading"]
            );
            assert_eq!(
                named.components["fermenter-log.Reading"],
                json!({"type": "number"})
            );
        }
    }

    #[test]
    fn the_hosts_names_stay_and_a_plugins_own_clash_is_numbered() {
        let named = name_schemas(&[
            route("host", json!({"Error": {"type": "object"}})),
            route("p", json!({"Error": {"type": "string"}})),
            route("p", json!({"Error": {"type": "number"}})),
        ]);
        assert_eq!(names(&named), ["Error", "p.Error", "p.Error_2"]);
        assert_eq!(new_ref(&named, 0, "Error"), "#/components/schemas/Error");
        assert_eq!(new_ref(&named, 1, "Error"), "#/components/schemas/p.Error");
        assert_eq!(
            new_ref(&named, 2, "Error"),
            "#/components/schemas/p.Error_2"
        );
    }

    #[test]
    fn schemas_differ_when_what_they_refer_to_differs() {
        let outer = json!({"properties": {"x": {"$ref": "#/components/schemas/Inner"}}});
        let named = name_schemas(&[
            route("a", json!({"Outer": outer, "Inner": {"type": "string"}})),
            route("b", json!({"Outer": outer, "Inner": {"type": "number"}})),
            route("c", json!({"Outer": outer, "Inner": {"type": "number"}})),
        ]);
        assert_eq!(names(&named), ["a.Inner", "a.Outer", "b.Inner", "b.Outer"]);
        assert_eq!(
            named.components["b.Outer"]["properties"]["x"]["$ref"],
            "#/components/schemas/b.Inner"
        );
        assert_eq!(new_ref(&named, 2, "Outer"), "#/components/schemas/b.Outer");
    }

    #[test]
    fn recursive_schemas_and_encoded_names() {
        let list = json!({"properties": {"next": {"$ref": "#/components/schemas/List"}}});
        let named = name_schemas(&[
            route("a", json!({"List": list})),
            route("b", json!({"List": list, "W<T>": {"type": "array"}})),
        ]);
        assert_eq!(names(&named), ["List", "W_T_"]);
        assert_eq!(
            named.components["List"]["properties"]["next"]["$ref"],
            "#/components/schemas/List"
        );
        let mut fragment = json!({"$ref": "#/components/schemas/W%3CT%3E"});
        rewrite_refs(&mut fragment, &|reference| named.new_ref(1, reference));
        assert_eq!(fragment["$ref"], "#/components/schemas/W_T_");
        assert_eq!(named.new_ref(1, "#/components/schemas/Nothing"), None);
    }
}
