/** Bounds on what checking a program may build, so no input makes compile time or memory explode. */

/**
 * Every call is inlined, so a chain of functions each calling the next nests the checker that
 * deep (a chain of 2,000 overflowed the stack), and a function calling the previous one twice
 * doubles the program per level (depth 16: 168 s). The examples nest at most 2 calls and expand
 * to under 200 operations; a 2,300-statement program is about 9,200. These bounds leave room for
 * programs 10× past any example and stop the rest with a CompileError.
 */
export const FRONTEND_LIMITS = {
  /** User-function calls nested inside one another. */
  callDepth: 256,
  /** IR nodes a program may expand to (checking one takes about 0.1 ms). */
  nodes: 50_000,
};
