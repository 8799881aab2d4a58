//! PNG output of the charts.
//!
//! PNG is not drawn here: rasterising text well needs a font stack. The CLI writes the SVG and
//! asks for a converter; see the crate README section "Querying the archive".
