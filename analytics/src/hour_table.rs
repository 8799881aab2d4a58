//! A guard around the listing tables for archives with zero-padded `hour=HH` directories.
//!
//! The archive writes `hour=7`; earlier versions wrote `hour=07`, and an archive may hold both
//! (files of one hour written before and after an upgrade). DataFusion turns
//! `date = '…' AND hour = 7` into a directory prefix to list, `date=…/hour=7`, and so misses
//! `hour=07`: a silently short answer. Rewriting `hour = N` to the equivalent
//! `hour >= N AND hour <= N` keeps the partition pruning (the listing still evaluates the
//! range against each directory's parsed value) and avoids the prefix shortcut.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::{
    arrow::datatypes::SchemaRef,
    catalog::{Session, TableProvider},
    common::tree_node::{Transformed, TreeNode},
    error::Result,
    logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType},
    physical_plan::ExecutionPlan,
};

/// A table whose `hour` equality filters are rewritten before they reach `inner`.
#[derive(Debug)]
pub struct HourTable {
    inner: Arc<dyn TableProvider>,
}

impl HourTable {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn TableProvider>) -> HourTable {
        HourTable { inner }
    }
}

fn is_hour(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == "hour")
}

/// `hour = N` (either way round) becomes `hour >= N AND hour <= N`, anywhere in `e`.
fn rewrite(e: &Expr) -> Expr {
    let result = e.clone().transform_up(|node| {
        if let Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) = &node
        {
            let pair = match (left.as_ref(), right.as_ref()) {
                (c, l @ Expr::Literal(..)) if is_hour(c) => Some((c.clone(), l.clone())),
                (l @ Expr::Literal(..), c) if is_hour(c) => Some((c.clone(), l.clone())),
                _ => None,
            };
            if let Some((column, literal)) = pair {
                let range = column
                    .clone()
                    .gt_eq(literal.clone())
                    .and(column.lt_eq(literal));
                return Ok(Transformed::yes(range));
            }
        }
        Ok(Transformed::no(node))
    });
    result.map_or_else(|_| e.clone(), |t| t.data)
}

#[async_trait]
impl TableProvider for HourTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        let rewritten: Vec<Expr> = filters.iter().map(|f| rewrite(f)).collect();
        let refs: Vec<&Expr> = rewritten.iter().collect();
        self.inner.supports_filters_pushdown(&refs)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rewritten: Vec<Expr> = filters.iter().map(rewrite).collect();
        self.inner.scan(state, projection, &rewritten, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    #[test]
    fn rewrites_hour_equality_only() {
        let e = col("date")
            .eq(lit("2025-01-06"))
            .and(lit(7).eq(col("hour")));
        let expected = col("date")
            .eq(lit("2025-01-06"))
            .and(col("hour").gt_eq(lit(7)).and(col("hour").lt_eq(lit(7))));
        assert_eq!(rewrite(&e), expected);
        let other = col("hour").gt(lit(3));
        assert_eq!(rewrite(&other), other);
    }
}
