//! How alike members' predictions are: Pearson's correlation, computed on the probabilities of each class
//! column separately and averaged over the classes where both columns vary. Members that agree closely add
//! little to each other, which is why a searched ensemble often leaves some out.

/// Pearson correlation of `a` and `b`; `None` when either is constant.
fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

/// Member × member correlation: Pearson per class column, averaged over the classes where it is defined.
pub fn correlation(members: &[&[f64]], n_classes: usize) -> Vec<Vec<Option<f64>>> {
    let rows = members.first().map_or(0, |m| m.len() / n_classes);
    let column = |m: &[f64], c: usize| -> Vec<f64> { (0..rows).map(|r| m[r * n_classes + c]).collect() };
    let columns: Vec<Vec<Vec<f64>>> = members.iter().map(|m| (0..n_classes).map(|c| column(m, c)).collect()).collect();
    (0..members.len())
        .map(|i| {
            (0..members.len())
                .map(|j| {
                    let defined: Vec<f64> =
                        (0..n_classes).filter_map(|c| pearson(&columns[i][c], &columns[j][c])).collect();
                    (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64)
                })
                .collect()
        })
        .collect()
}
