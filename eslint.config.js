'use strict'
module.exports = require('neostandard')({
  ts: true,
  ignores: ['dist/**', 'dist-check/**', 'node_modules/**', '.ci/**', '.tap/**', 'coverage/**']
})
