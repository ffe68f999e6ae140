// ESLint for the browser JavaScript in src/parley/static: plain ES modules, no build step.
import globals from "globals";

export default [
  {
    files: ["src/parley/static/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      globals: globals.browser,
    },
    rules: {
      "no-unused-vars": "error",
      "no-undef": "error",
      eqeqeq: "error",
      "no-eval": "error",
      "no-implied-eval": "error",
    },
  },
];
