/**
 * The interpreter's rule for `causal_contract` (part of the float64 oracle; like interp.ts it
 * imports nothing from code generation): the prefix state Σ_{j ≤ i} u_j w_jᵀ kept as it grows,
 * each row contracted with x. The additions and products run in the order of the unfused
 * `sum[a](x[i, a] * cumsum(u ⊗ w, axis=0)[i, a, c])`, so the fused graph computes the same
 * float64 values.
 */
import type { Node } from "./ir/types.ts";
import type { Tensor } from "./tensor.ts";

/** out[i, c] = Σ_a x[i, a] Σ_{j ≤ i} u[j, a] w[j, c] (without w: out[i] = Σ_a x[i, a] Σ u[j, a]). */
export function causalContract(n: Node, [x, u, w]: Tensor[]): Tensor {
  const rows = x.shape[0], d = x.shape[1], e = w ? w.shape[1] : 1;
  const state = new Float64Array(d * e);
  const out: Tensor = {
    shape: w ? [rows, e] : [rows],
    data: new Float64Array(rows * e),
    dtype: n.type.dtype,
  };
  for (let i = 0; i < rows; i++) {
    for (let a = 0; a < d; a++) {
      for (let c = 0; c < e; c++) {
        state[a * e + c] += u.data[i * d + a] * (w ? w.data[i * e + c] : 1);
      }
    }
    for (let c = 0; c < e; c++) {
      let acc = 0;
      for (let a = 0; a < d; a++) acc += x.data[i * d + a] * state[a * e + c];
      out.data[i * e + c] = acc;
    }
  }
  return out;
}
