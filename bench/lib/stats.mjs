// Small statistics the benches share.

/** The middle value of `xs` (the upper middle for an even count); `xs` is left as it was. */
export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
