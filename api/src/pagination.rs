//! `limit` + `starting_after` paging, as every list endpoint takes it: newest
//! first, one extra row fetched to tell whether there is more.

use std::str::FromStr;

use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiResult;
use crate::problem::Problem;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// How many items: 1–100, default 10.
    #[param(minimum = 1, maximum = 100, example = 10)]
    limit: Option<i64>,
    /// The `id` of the last item of the previous page.
    starting_after: Option<String>,
}

/// A validated page request for ids of type `Id`.
pub struct Page<Id> {
    limit: i64,
    pub after: Option<Id>,
}

impl PageParams {
    /// `what` names the id kind in the error (`"sale"`, `"order"`).
    pub fn parse<Id: FromStr>(&self, what: &str) -> ApiResult<Page<Id>> {
        let limit = self.limit.unwrap_or(10);
        if !(1..=100).contains(&limit) {
            return Err(Problem::invalid("limit", "must be between 1 and 100"));
        }
        let after = match self.starting_after.as_deref() {
            Some(raw) => {
                Some(raw.parse::<Id>().map_err(|_| Problem::invalid("starting_after", format!("not a {what} id")))?)
            }
            None => None,
        };
        Ok(Page { limit, after })
    }
}

impl<Id> Page<Id> {
    /// How many rows to ask the database for.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// The page's rows, and whether more follow.
    pub fn cut<T>(&self, mut rows: Vec<T>) -> (Vec<T>, bool) {
        let has_more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit as usize);
        (rows, has_more)
    }
}
