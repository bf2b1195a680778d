//! Option tables: one row per option carries its name, environment variable, type with range,
//! default and doc, so parsing, defaults, environment variables, `--help` and the docs' tables
//! all come from one declaration (the filter's table is `config::OPTIONS`, the agent has its own).

use crate::strict_json::{FieldError, ObjReader};
use serde_json::{Map, Value};

/// One option as a user sees it.
#[derive(Clone, Copy, Debug)]
pub struct OptionSpec {
    /// JSON field name (and `--flag` with `-` for `_` where a command line takes it).
    pub name: &'static str,
    /// Environment variable that sets it when the JSON does not (`None`: JSON only).
    pub env: Option<&'static str>,
    /// Its type, which also says how its environment variable is read.
    pub kind: Kind,
    /// What it is when nobody sets it.
    pub default: Default,
    /// One line on what it is for (not in Wasm builds, which never print it).
    #[cfg(not(target_arch = "wasm32"))]
    pub doc: &'static str,
}

impl OptionSpec {
    /// The default of an integer option (0 for any other).
    pub const fn default_integer(&self) -> u64 {
        match self.default {
            Default::Integer(n) => n,
            _ => 0,
        }
    }
}

/// The type of an option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Text.
    Text,
    /// An unsigned integer within `min..=max`.
    Integer {
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// `true`/`false` (in the environment also `1`/`0`, `yes`/`no`, `on`/`off`).
    Bool,
    /// A list (in the environment: comma-separated).
    List,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// Structured JSON, no environment variable.
    Json,
}

/// What an option is when nobody sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Default {
    /// Nothing: the option must be set.
    Required,
    /// Unset; the text says what that means to a reader (`none`, `next to the binary`, …).
    Unset(&'static str),
    /// This text (or choice).
    Text(&'static str),
    /// This number.
    Integer(u64),
    /// This flag.
    Bool(bool),
}

impl Default {
    /// The default as the docs write it.
    pub fn to_doc(self) -> String {
        match self {
            Default::Required => "required".into(),
            Default::Unset(t) | Default::Text(t) => t.into(),
            Default::Integer(n) => n.to_string(),
            Default::Bool(b) => b.to_string(),
        }
    }
}

/// Declares a row; the doc and the description of an unset default are dropped from Wasm
/// builds, which never print them (a few KB of a proxy module).
pub const fn row(
    name: &'static str,
    env: Option<&'static str>,
    kind: Kind,
    default: Default,
    doc: &'static str,
) -> OptionSpec {
    #[cfg(target_arch = "wasm32")]
    let _ = doc;
    OptionSpec {
        name,
        env,
        kind,
        default: match default {
            Default::Unset(_) if cfg!(target_arch = "wasm32") => Default::Unset(""),
            d => d,
        },
        #[cfg(not(target_arch = "wasm32"))]
        doc,
    }
}

/// The rows' JSON names, in order: what a strict reader allows (`N` is the table's length).
pub const fn names<const N: usize>(rows: &[&OptionSpec]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N && i < rows.len() {
        out[i] = rows[i].name;
        i += 1;
    }
    out
}

/// The row called `name`.
pub fn find<'a>(rows: &[&'a OptionSpec], name: &str) -> Option<&'a OptionSpec> {
    rows.iter().copied().find(|o| o.name == name)
}

/// A reference table in Markdown, exactly as the docs carry it between their markers.
#[cfg(not(target_arch = "wasm32"))]
pub fn reference_table(rows: &[&OptionSpec]) -> String {
    let mut out = String::from(
        "| option | environment variable | default | what it is for |\n|---|---|---|---|\n",
    );
    for o in rows {
        let env = o.env.map_or("—".to_string(), |e| format!("`{e}`"));
        out.push_str(&format!(
            "| `{}` | {env} | `{}` | {} |\n",
            o.name,
            o.default.to_doc(),
            o.doc.replace('|', "\\|")
        ));
    }
    out
}

/// The JSON value an environment variable's (or a flag's) text stands for, by the option's type;
/// text that is not of the type stays text, so the reader's error names what was expected.
pub fn text_value(kind: Kind, text: &str) -> Value {
    match kind {
        Kind::Integer { .. } => text
            .parse::<u64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(text)),
        Kind::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Value::Bool(true),
            "false" | "0" | "no" | "off" => Value::Bool(false),
            _ => Value::from(text),
        },
        Kind::List => Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Value::from)
                .collect(),
        ),
        Kind::Text | Kind::Choice(_) | Kind::Json => Value::from(text),
    }
}

/// Options gathered from the environment, then JSON over them, then flags over both, with where
/// each value came from so an error can name the variable or flag the user actually set.
#[derive(Debug, Default)]
pub struct Merged {
    /// The merged object.
    pub values: Map<String, Value>,
    /// Option name → where its value came from (`AFORO_…`, `--flag`); absent: the JSON.
    origins: Vec<(&'static str, String)>,
}

impl Merged {
    /// The environment's values for `rows` (blank variables are unset).
    pub fn from_env(rows: &[&OptionSpec], env: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut m = Merged::default();
        for o in rows {
            let Some(var) = o.env else { continue };
            let Some(text) = env(var).filter(|t| !t.trim().is_empty()) else {
                continue;
            };
            m.values
                .insert(o.name.to_string(), text_value(o.kind, text.trim()));
            m.origins.push((o.name, var.to_string()));
        }
        m
    }

    /// JSON fields over what is there; a `null` unsets the field (the default applies), and the
    /// environment is then no longer named in its errors.
    pub fn json(&mut self, obj: Map<String, Value>) {
        for (k, v) in obj {
            if !v.is_null() {
                self.origins.retain(|(n, _)| *n != k);
            }
            self.values.insert(k, v);
        }
    }

    /// A flag's text over what is there (`flag` as the user wrote it, for errors).
    pub fn flag(&mut self, o: &OptionSpec, flag: &str, text: &str) {
        self.origins.retain(|(n, _)| *n != o.name);
        self.origins.push((o.name, flag.to_string()));
        self.values
            .insert(o.name.to_string(), text_value(o.kind, text));
    }

    /// Renames an error's field to the variable or flag its value came from.
    pub fn blame(&self, e: FieldError) -> FieldError {
        let field = e.path.split(['.', '[']).next().unwrap_or("");
        match self.origins.iter().find(|(n, _)| *n == field) {
            Some((_, source)) => FieldError::new(source.clone(), e.message),
            None => e,
        }
    }
}

/// A declaration mistake in a table (a row read as a type it does not have); tests read every
/// row, so users never see it.
fn misdeclared(o: &OptionSpec) -> FieldError {
    FieldError::new(
        o.name,
        "is declared with another type in the option table (a bug: please report it)",
    )
}

/// An integer option: its value within range, or its default.
pub fn integer(r: &ObjReader<'_>, o: &OptionSpec) -> Result<u64, FieldError> {
    let (Kind::Integer { min, max }, Default::Integer(d)) = (o.kind, o.default) else {
        return Err(misdeclared(o));
    };
    Ok(r.u64_in(o.name, min, max)?.unwrap_or(d))
}

/// A choice option: the word chosen, or its default.
pub fn choice(r: &ObjReader<'_>, o: &OptionSpec) -> Result<&'static str, FieldError> {
    let (Kind::Choice(words), Default::Text(d)) = (o.kind, o.default) else {
        return Err(misdeclared(o));
    };
    Ok(match r.choice(o.name, words)? {
        Some(given) => words.iter().copied().find(|w| *w == given).unwrap_or(d),
        None => d,
    })
}

/// A boolean option, or its default.
pub fn flag(r: &ObjReader<'_>, o: &OptionSpec) -> Result<bool, FieldError> {
    let (Kind::Bool, Default::Bool(d)) = (o.kind, o.default) else {
        return Err(misdeclared(o));
    };
    Ok(r.bool(o.name)?.unwrap_or(d))
}

/// A text option: the non-empty text given, else its default text (`None` when unset).
pub fn text<'a>(r: &'a ObjReader<'_>, o: &OptionSpec) -> Result<Option<&'a str>, FieldError> {
    let given = r.non_empty_string(o.name)?;
    Ok(match (given, o.default) {
        (Some(t), _) => Some(t),
        (None, Default::Text(d)) => Some(d),
        (None, _) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    static N_ROW: OptionSpec = row(
        "n",
        Some("X_N"),
        Kind::Integer { min: 1, max: 9 },
        Default::Integer(3),
        "a number",
    );
    static L_ROW: OptionSpec = row(
        "l",
        Some("X_L"),
        Kind::List,
        Default::Unset("[]"),
        "a list | with a bar",
    );
    static C_ROW: OptionSpec = row(
        "c",
        None,
        Kind::Choice(&["a", "b"]),
        Default::Text("a"),
        "a choice",
    );
    static ROWS: &[&OptionSpec] = &[&N_ROW, &L_ROW, &C_ROW];

    #[test]
    fn names_table_and_environment_come_from_the_rows() {
        const N: [&str; 3] = names::<3>(ROWS);
        assert_eq!(N, ["n", "l", "c"]);
        assert_eq!(
            reference_table(ROWS),
            "| option | environment variable | default | what it is for |\n|---|---|---|---|\n\
             | `n` | `X_N` | `3` | a number |\n\
             | `l` | `X_L` | `[]` | a list \\| with a bar |\n\
             | `c` | — | `a` | a choice |\n"
        );
        let env = |k: &str| match k {
            "X_N" => Some("7".to_string()),
            "X_L" => Some("a, b,,c".to_string()),
            _ => None,
        };
        let mut m = Merged::from_env(ROWS, &env);
        assert_eq!(m.values["n"], 7);
        assert_eq!(m.values["l"], serde_json::json!(["a", "b", "c"]));
        m.flag(ROWS[0], "--n", "12");
        let v = Value::Object(m.values.clone());
        let r = ObjReader::new("", &v, &["n", "l", "c"]).unwrap();
        let e = integer(&r, ROWS[0]).unwrap_err();
        assert_eq!(m.blame(e).to_string(), "--n: must be 1..=9, got 12");
        assert_eq!(choice(&r, ROWS[2]).unwrap(), "a");
        assert!(integer(&r, ROWS[2]).is_err(), "a choice is not an integer");
    }
}
