export function greet(name) {
  // FIXME: say something nicer
  return `hi ${name}`;
}
