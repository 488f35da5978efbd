//! The configuration reference: the config's JSON Schema (`upkeep config schema`) rendered as
//! one Markdown table, for the README (`upkeep config reference`).
//!
//! The schema is generated from the very structs the config is read into, so rendering the
//! reference from it (instead of writing it by hand) means the README cannot describe a key
//! that does not exist or miss one that does: a test compares the two.

use serde_json::{Map, Value};

/// Nesting deeper than this is a schema bug (a recursive type), not documentation.
const MAX_DEPTH: usize = 8;

/// The reference table for a schema as `upkeep config schema` prints it.
pub fn reference(schema: &Value) -> String {
    let defs = schema.get("$defs").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut rows = Vec::new();
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        walk(props, "", &defs, 0, &mut rows);
    }
    let mut out = String::from("| Key | Type | Default | Description |\n|---|---|---|---|\n");
    for row in rows {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            row.key,
            cell(&row.type_),
            cell(&row.default),
            cell(&row.description)
        ));
    }
    out
}

struct Row {
    key: String,
    type_: String,
    default: String,
    description: String,
}

/// One row per property, then the rows of what it contains (`rules[].match.id`).
fn walk(props: &Map<String, Value>, prefix: &str, defs: &Map<String, Value>, depth: usize, rows: &mut Vec<Row>) {
    if depth > MAX_DEPTH {
        return;
    }
    for (name, prop) in props {
        let key = format!("{prefix}{name}");
        let shape = Shape::of(prop, defs);
        let mut description = text(prop.get("description")).unwrap_or_else(|| shape.description.clone());
        if !shape.choices.is_empty() {
            let choices: Vec<String> = shape
                .choices
                .iter()
                .map(
                    |(value, about)| {
                        if about.is_empty() { format!("`{value}`") } else { format!("`{value}`: {about}") }
                    },
                )
                .collect();
            description = format!("{description}<br>{}", choices.join("<br>"));
        }
        let default = prop.get("default").filter(|d| !d.is_null()).map(|d| format!("`{d}`")).unwrap_or_default();
        rows.push(Row { key: key.clone(), type_: shape.type_.clone(), default, description });
        if let Some(children) = &shape.children {
            let inner = if shape.type_.starts_with("list") { format!("{key}[].") } else { format!("{key}.") };
            walk(children, &inner, defs, depth + 1, rows);
        }
    }
}

/// What a property holds, with `$ref`s, `anyOf [x, null]` and arrays seen through.
struct Shape {
    type_: String,
    description: String,
    choices: Vec<(String, String)>,
    children: Option<Map<String, Value>>,
}

impl Shape {
    fn of(prop: &Value, defs: &Map<String, Value>) -> Shape {
        let prop = resolve(unwrap_nullable(prop), defs);
        let description = text(prop.get("description")).unwrap_or_default();
        if is(prop, "array") {
            let item = prop.get("items").map_or(&Value::Null, |i| resolve(unwrap_nullable(i), defs));
            let inner = Shape::of(item, defs);
            return Shape { type_: format!("list of {}", inner.type_), description, ..inner };
        }
        let choices = choices(prop);
        if !choices.is_empty() {
            return Shape { type_: "string".into(), description, choices, children: None };
        }
        if let Some(props) = prop.get("properties").and_then(Value::as_object) {
            return Shape { type_: "object".into(), description, choices, children: Some(props.clone()) };
        }
        if prop.get("additionalProperties").is_some_and(Value::is_object) {
            return Shape { type_: "map".into(), description, choices, children: None };
        }
        let type_ =
            ["string", "boolean", "integer", "number"].into_iter().find(|t| is(prop, t)).unwrap_or("any").to_string();
        Shape { type_, description, choices, children: None }
    }
}

/// `anyOf: [X, {type: null}]` (an optional struct) is X.
fn unwrap_nullable(v: &Value) -> &Value {
    if let Some(any) = v.get("anyOf").and_then(Value::as_array) {
        let real: Vec<&Value> = any.iter().filter(|a| a.get("type").and_then(Value::as_str) != Some("null")).collect();
        if let [only] = real.as_slice() {
            return only;
        }
    }
    v
}

/// Follow `$ref: #/$defs/Name`, once per level.
fn resolve<'a>(v: &'a Value, defs: &'a Map<String, Value>) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(name) => defs.get(name).unwrap_or(v),
        None => v,
    }
}

/// Whether the schema's `type` is (or includes) this one.
fn is(v: &Value, t: &str) -> bool {
    match v.get("type") {
        Some(Value::String(s)) => s == t,
        Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(t)),
        _ => false,
    }
}

/// An enum's values with their descriptions (`oneOf` of `const`s, or a plain `enum`).
fn choices(v: &Value) -> Vec<(String, String)> {
    if let Some(one_of) = v.get("oneOf").and_then(Value::as_array) {
        return one_of
            .iter()
            .filter_map(|c| {
                Some((c.get("const")?.as_str()?.to_string(), text(c.get("description")).unwrap_or_default()))
            })
            .collect();
    }
    v.get("enum")
        .and_then(Value::as_array)
        .map(|e| e.iter().filter_map(|x| Some((x.as_str()?.to_string(), String::new()))).collect())
        .unwrap_or_default()
}

/// A description on one line (schemars keeps the doc comment's line breaks).
fn text(v: Option<&Value>) -> Option<String> {
    let s = v?.as_str()?;
    Some(s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// A table cell: `|` would end it.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leaf_key_of_the_config_has_a_row() {
        let table = reference(&crate::config::schema());
        for key in
            ["`rules[].match.id`", "`verify.timeout`", "`hostRules[].host`", "`rules[].onFailure`", "`maxOpenPRs`"]
        {
            assert!(table.contains(&format!("| {key} |")), "{key} missing from\n{table}");
        }
        // Enum values are spelled out with what they mean.
        assert!(table.contains("`issue`: A \"forward fix needed\" issue"), "{table}");
    }

    #[test]
    fn a_pipe_in_a_description_does_not_break_the_table() {
        let schema = serde_json::json!({
            "properties": {"a": {"type": "string", "description": "x | y", "default": "z"}}
        });
        let table = reference(&schema);
        assert!(table.contains("| `a` | string | `\"z\"` | x \\| y |"), "{table}");
    }

    #[test]
    fn lists_of_objects_and_nullable_structs_are_walked() {
        let schema = serde_json::json!({
            "$defs": {"Inner": {"type": "object", "properties": {"b": {"type": ["boolean", "null"]}}}},
            "properties": {
                "list": {"type": "array", "items": {"$ref": "#/$defs/Inner"}},
                "one": {"anyOf": [{"$ref": "#/$defs/Inner"}, {"type": "null"}]}
            }
        });
        let table = reference(&schema);
        assert!(table.contains("| `list` | list of object |"), "{table}");
        assert!(table.contains("| `list[].b` | boolean |"), "{table}");
        assert!(table.contains("| `one.b` | boolean |"), "{table}");
    }
}
