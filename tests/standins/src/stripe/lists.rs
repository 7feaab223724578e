//! Stripe's pagination, so that Stripe's own clients can page through the
//! stand-in: lists take `limit` (1..=100, default 10) and one of the cursors
//! `starting_after` / `ending_before`, answer newest first with `has_more`
//! and `url`; search takes `limit` and `page` and answers `next_page`, an
//! opaque token, until the last page.

use serde_json::{Value, json};

use super::table::{Created, Cursor, Keyed, Table, list_body};

const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 100;

/// What a page is made of: each object's id, creation time and JSON, in the
/// order the objects were created.
pub(crate) struct Item {
    pub(crate) id: String,
    pub(crate) created: i64,
    pub(crate) json: Value,
}

/// A `400 invalid_request_error` body, as Stripe words it.
fn invalid(param: &str, message: String, code: Option<&str>) -> Value {
    let mut error = json!({ "type": "invalid_request_error", "param": param, "message": message });
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    json!({ "error": error })
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn limit(query: &[(String, String)]) -> Result<usize, Value> {
    let Some(raw) = param(query, "limit") else { return Ok(DEFAULT_LIMIT) };
    match raw.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(invalid(
            "limit",
            format!("Invalid limit: '{raw}'. It must be an integer between 1 and {MAX_LIMIT}."),
            Some("parameter_invalid_integer"),
        )),
    }
}

/// Newest first: by `created`, and among equals the later-inserted first (the
/// order Stripe gives objects created in the same second).
fn newest_first(mut items: Vec<Item>) -> Vec<Item> {
    items.reverse();
    items.sort_by_key(|item| std::cmp::Reverse(item.created));
    items
}

/// One page of a stored [`Table`] (`object: "list"`), filtered by
/// `created[gte|gt|lte|lt]`, or the error body of a 400.
pub(crate) fn table_list<T: Keyed>(
    table: &Table<T>,
    query: &[(String, String)],
    url: &str,
    what: &str,
    json: impl Fn(&T) -> Value,
) -> Result<Value, Value> {
    let limit = limit(query)?;
    let created = Created::parse(query)
        .map_err(|p| invalid(&p, format!("Invalid timestamp for {p}."), Some("parameter_invalid_integer")))?;
    let cursor = match (param(query, "starting_after"), param(query, "ending_before")) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "starting_after",
                "You may only specify one of these parameters: ending_before, starting_after.".into(),
                None,
            ));
        }
        (Some(after), None) => Cursor::StartingAfter(after),
        (None, Some(before)) => Cursor::EndingBefore(before),
        (None, None) => Cursor::None,
    };
    let param_name = if matches!(cursor, Cursor::EndingBefore(_)) { "ending_before" } else { "starting_after" };
    let (items, has_more) = table
        .page(created, cursor, limit)
        .map_err(|id| invalid(param_name, format!("No such {what}: '{id}'"), Some("resource_missing")))?;
    Ok(list_body(items.into_iter().map(json).collect(), has_more, url))
}

/// Items kept out of a [`Table`] (derived objects), filtered by `created`.
pub(crate) fn created_filter(items: Vec<Item>, query: &[(String, String)]) -> Result<Vec<Item>, Value> {
    let created = Created::parse(query)
        .map_err(|p| invalid(&p, format!("Invalid timestamp for {p}."), Some("parameter_invalid_integer")))?;
    Ok(items.into_iter().filter(|i| created.contains(i.created)).collect())
}

/// One page of a list (`object: "list"`), or the error body of a 400.
pub(crate) fn list(items: Vec<Item>, query: &[(String, String)], url: &str, what: &str) -> Result<Value, Value> {
    let limit = limit(query)?;
    let items = newest_first(items);
    let position = |param_name: &str, id: &str| {
        items
            .iter()
            .position(|item| item.id == id)
            .ok_or_else(|| invalid(param_name, format!("No such {what}: '{id}'"), Some("resource_missing")))
    };
    let (range, has_more) = match (param(query, "starting_after"), param(query, "ending_before")) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "starting_after",
                "You may only specify one of these parameters: ending_before, starting_after.".into(),
                None,
            ));
        }
        (Some(after), None) => {
            let start = position("starting_after", after)? + 1;
            let end = (start + limit).min(items.len());
            (start..end, end < items.len())
        }
        // The `limit` objects just newer than the cursor, still newest first.
        (None, Some(before)) => {
            let end = position("ending_before", before)?;
            let start = end.saturating_sub(limit);
            (start..end, start > 0)
        }
        (None, None) => {
            let end = limit.min(items.len());
            (0..end, end < items.len())
        }
    };
    let data: Vec<Value> = items[range].iter().map(|item| item.json.clone()).collect();
    Ok(json!({ "object": "list", "data": data, "has_more": has_more, "url": url }))
}

/// The `next_page` token for a search page that ended with `id`. Opaque to
/// clients; it only has to come back unchanged.
fn page_token(id: &str) -> String {
    hex::encode(format!("after:{id}"))
}

fn after_token(token: &str) -> Option<String> {
    let bytes = hex::decode(token).ok()?;
    String::from_utf8(bytes).ok()?.strip_prefix("after:").map(str::to_owned)
}

/// One page of search results (`object: "search_result"`), or a 400's body.
pub(crate) fn search(matches: Vec<Item>, query: &[(String, String)], url: &str) -> Result<Value, Value> {
    let limit = limit(query)?;
    let items = newest_first(matches);
    let start = match param(query, "page") {
        None => 0,
        Some(token) => {
            let after = after_token(token).ok_or_else(|| invalid("page", format!("Invalid page: '{token}'"), None))?;
            let at = items
                .iter()
                .position(|item| item.id == after)
                .ok_or_else(|| invalid("page", format!("Invalid page: '{token}'"), None))?;
            at + 1
        }
    };
    let end = (start + limit).min(items.len());
    let page = &items[start.min(end)..end];
    let has_more = end < items.len();
    let next_page = match page.last() {
        Some(last) if has_more => json!(page_token(&last.id)),
        _ => Value::Null,
    };
    let data: Vec<Value> = page.iter().map(|item| item.json.clone()).collect();
    Ok(json!({
        "object": "search_result", "data": data, "has_more": has_more, "next_page": next_page,
        "url": url, "total_count": null,
    }))
}
