/**
 * Binding keys: what a kernel's code reads at each of its bindings, before lowering assigns
 * buffers. A key is a number (kernels list and compare them), but only this module knows the
 * encoding: kernels make keys with the constructors, lowering reads them with `decodeKey`.
 */

/** A binding key (see the constructors below). */
export type BindingKey = number & { readonly bindingKey: unique symbol };

/** What a binding key names. */
export type KeyTarget =
  | { node: number } // the buffer holding a node's value
  | { vec4: number } // the same buffer, read as vec4<f32>
  | { arena: true } // a region's arena
  | { partial: true }; // a split kernel's partial results

/** Vec4 views of node k are keyed −k − VEC4; node ids are ≥ 0, the other keys small negatives. */
const VEC4 = 1_000_000;

/** The key of node `id`'s buffer. */
export const nodeKey = (id: number) => id as BindingKey;
/** The key of a vec4 view of node `id`'s buffer. */
export const vec4Key = (id: number) => (-id - VEC4) as BindingKey;
/** The key of a region's arena. */
export const ARENA = -1 as BindingKey;
/** The key of a split kernel's partial results. */
export const PARTIAL = -2 as BindingKey;

/** What `key` names. */
export function decodeKey(key: BindingKey): KeyTarget {
  if (key >= 0) return { node: key };
  if (key <= -VEC4) return { vec4: -key - VEC4 };
  if (key === ARENA) return { arena: true };
  if (key === PARTIAL) return { partial: true };
  throw new Error(`internal: binding key ${key}`);
}
