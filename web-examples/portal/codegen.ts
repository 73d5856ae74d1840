// Types and the persisted-documents manifest from Caregraph's exported schema and this app's
// operations. A schema change that breaks an operation fails `npm run build` here.
import type { CodegenConfig } from '@graphql-codegen/cli';

const config: CodegenConfig = {
  schema: '../../schema.graphql',
  documents: ['src/**/*.{ts,tsx}', '!src/gql/**/*'],
  ignoreNoDocuments: false,
  errorsOnly: true,
  generates: {
    './src/gql/': {
      preset: 'client',
      presetConfig: {
        fragmentMasking: false,
        // `persisted-documents.json`: { "<sha256 of the document>": "<document>" }, the
        // manifest Caregraph loads with PERSISTED_DOCUMENTS_FILE; each document carries its
        // hash in `__meta__.hash`, which the client sends instead of the text.
        persistedDocuments: { hashAlgorithm: 'sha256' },
      },
      config: {
        useTypeImports: true,
        enumsAsTypes: true,
        avoidOptionals: { field: true, inputValue: false, object: false, defaultValue: false },
        scalars: { DateTime: 'string', NaiveDate: 'string', JSON: 'unknown' },
      },
    },
  },
};

export default config;
