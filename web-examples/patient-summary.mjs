// Sign in, read what you may see, sign out. Node 20+ (global fetch), no dependencies.
const url = process.env.CAREGRAPH_URL ?? 'http://127.0.0.1:8080/graphql';
const email = process.argv[2] ?? 'patient@caregraph.dev';
const password = process.argv[3] ?? 'caregraph-demo';

async function gql(query, variables = {}, token) {
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify({ query, variables }),
  });
  const body = await res.json();
  for (const e of body.errors ?? []) {
    console.error(`  ! ${e.extensions?.code ?? 'ERROR'} at ${(e.path ?? []).join('.') || '(request)'}: ${e.message}`);
  }
  return body.data;
}

const login = await gql(
  'mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken mfaRequired } }',
  { e: email, p: password },
);
if (!login?.login?.accessToken) {
  console.error(login?.login?.mfaRequired ? 'MFA is enrolled: complete sign-in with verifyMfa' : 'sign-in failed');
  process.exit(1);
}
const token = login.login.accessToken;
const data = await gql(
  `{ me { email role }
     patients(first: 10) { totalCount edges { node { id givenName familyName birthDate allergies { substance severity status } } } } }`,
  {},
  token,
);
console.log(`signed in as ${data.me.email} (${data.me.role}); ${data.patients.totalCount} patient(s) visible`);
for (const { node } of data.patients.edges) {
  const allergies = node.allergies === null ? 'not shared with you' : node.allergies.map((a) => `${a.substance} (${a.severity})`).join(', ') || 'none';
  console.log(`- ${node.givenName} ${node.familyName}, born ${node.birthDate}; allergies: ${allergies}`);
}
await gql('mutation { logout }', {}, token);
