// The app's settings page: links this Stripe account to one CodeQR workspace.
//
// 1. Status: a signed POST /stripe-app/status says whether the account is linked.
// 2. Connect: the user signs in to CodeQR in a new tab (OAuth authorization code with
//    PKCE; the Dashboard keeps the verifier and hands back `oauthContext`), we exchange
//    the code at /oauth/token, then POST /stripe-app/connect with the signature (which
//    Stripe account) and the access token (which workspace). The token is only needed
//    for that call, so it is revoked right after; it is never stored.
// 3. Disconnect: a signed POST /stripe-app/disconnect unlinks the account and revokes
//    the workspace's OAuth tokens on the server.
import {useCallback, useEffect, useState} from 'react';
import type {ExtensionContextValue} from '@stripe/ui-extension-sdk/context';
import {createOAuthState} from '@stripe/ui-extension-sdk/oauth';
import {
  Badge,
  Banner,
  Box,
  Button,
  Inline,
  SettingsView as SettingsPage,
  Spinner,
} from '@stripe/ui-extension-sdk/ui';
import {fetchStripeSignature} from '@stripe/ui-extension-sdk/utils';

type Mode = 'live' | 'test';

interface LinkedStatus {
  connected: true;
  account_id: string;
  workspace: {slug: string; name: string};
  plan: string;
  connected_since: string | null;
  tracking_active: boolean;
}

interface UnlinkedStatus {
  connected: false;
  account_id: string;
}

type Status = LinkedStatus | UnlinkedStatus;

interface ApiErrorBody {
  error: {code: string; message: string};
}

interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in: number;
  refresh_token?: string;
  scope?: string;
}

interface Settings {
  apiUrl: string;
  clientId: string;
  scope: string;
  appId: string;
  mode: Mode;
}

class CodeqrError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const DEFAULTS = {
  CODEQR_API_URL: 'https://api.codeqr.io',
  CODEQR_OAUTH_CLIENT_ID: 'stripe-app',
  CODEQR_OAUTH_SCOPE: 'conversions:read conversions:write',
};
const APP_ID = 'com.codeqr.conversions';

const constant = (
  constants: Record<string, unknown> | undefined,
  name: keyof typeof DEFAULTS,
): string => {
  const value = constants?.[name];
  return typeof value === 'string' && value !== '' ? value : DEFAULTS[name];
};

// The Dashboard's OAuth callback for this app: exactly what the OAuth client registers.
export const redirectUri = (mode: Mode, appId: string): string =>
  `https://dashboard.stripe.com/${mode === 'test' ? 'test/' : ''}apps-oauth/${appId}`;

export const authorizeUrl = (
  settings: Settings,
  state: string,
  challenge: string,
): string => {
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: settings.clientId,
    redirect_uri: redirectUri(settings.mode, settings.appId),
    scope: settings.scope,
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  });
  return `${settings.apiUrl}/oauth/authorize?${query.toString()}`;
};

const readJson = async <T,>(response: Response): Promise<T> => {
  const body: unknown = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (body as ApiErrorBody | null)?.error;
    throw new CodeqrError(
      error?.code ?? `HTTP_${response.status}`,
      error?.message ?? `CodeQR answered ${response.status}`,
    );
  }
  return body as T;
};

// A call the server authenticates by the Dashboard's signature over user_id and
// account_id; the body must carry the same two values.
const signedPost = async <T,>(
  settings: Settings,
  path: string,
  ids: {userId: string; accountId: string},
  accessToken?: string,
): Promise<T> => {
  const headers: Record<string, string> = {
    'Content-Type': 'application/json',
    'Stripe-Signature': await fetchStripeSignature(),
  };
  if (accessToken !== undefined) {
    headers.Authorization = `Bearer ${accessToken}`;
  }
  const response = await fetch(`${settings.apiUrl}/stripe-app/${path}`, {
    method: 'POST',
    headers,
    body: JSON.stringify({user_id: ids.userId, account_id: ids.accountId}),
  });
  return readJson<T>(response);
};

// Form posts only: the token endpoint refuses parameters in the query string.
const formPost = (settings: Settings, path: string, form: Record<string, string>) =>
  fetch(`${settings.apiUrl}/oauth/${path}`, {
    method: 'POST',
    headers: {'Content-Type': 'application/x-www-form-urlencoded'},
    body: new URLSearchParams(form).toString(),
  });

const exchangeCode = async (
  settings: Settings,
  code: string,
  verifier: string,
): Promise<TokenResponse> =>
  readJson<TokenResponse>(
    await formPost(settings, 'token', {
      grant_type: 'authorization_code',
      code,
      code_verifier: verifier,
      client_id: settings.clientId,
      redirect_uri: redirectUri(settings.mode, settings.appId),
    }),
  );

const revoke = async (settings: Settings, token: TokenResponse): Promise<void> => {
  const value = token.refresh_token ?? token.access_token;
  await formPost(settings, 'revoke', {
    token: value,
    token_type_hint: token.refresh_token ? 'refresh_token' : 'access_token',
    client_id: settings.clientId,
  }).catch(() => undefined);
};

const SettingsView = ({userContext, environment, oauthContext}: ExtensionContextValue) => {
  const mode: Mode = environment.mode === 'test' ? 'test' : 'live';
  const settings: Settings = {
    apiUrl: constant(environment.constants, 'CODEQR_API_URL'),
    clientId: constant(environment.constants, 'CODEQR_OAUTH_CLIENT_ID'),
    scope: constant(environment.constants, 'CODEQR_OAUTH_SCOPE'),
    appId: environment.appId ?? APP_ID,
    mode,
  };
  const ids = {userId: userContext.id, accountId: userContext.account.id};

  const [status, setStatus] = useState<Status | null>(null);
  const [error, setError] = useState<CodeqrError | null>(null);
  const [busy, setBusy] = useState(false);
  const [authUrl, setAuthUrl] = useState('');

  const run = useCallback(async (step: () => Promise<Status>) => {
    setBusy(true);
    setError(null);
    try {
      setStatus(await step());
    } catch (e) {
      setError(e instanceof CodeqrError ? e : new CodeqrError('NETWORK', String(e)));
    } finally {
      setBusy(false);
    }
  }, []);

  // Where we stand.
  useEffect(() => {
    void run(() => signedPost<Status>(settings, 'status', ids));
  }, [ids.accountId]);

  // A fresh PKCE pair for the "Connect" link; the Dashboard keeps the verifier.
  useEffect(() => {
    createOAuthState().then(({state, challenge}) => {
      setAuthUrl(authorizeUrl(settings, state, challenge));
    });
  }, [settings.mode]);

  // Back from CodeQR's consent page: exchange the code, link, forget the token.
  useEffect(() => {
    const code = oauthContext?.code;
    const verifier = oauthContext?.verifier;
    if (oauthContext?.error) {
      setError(new CodeqrError(oauthContext.error, 'Signing in to CodeQR was cancelled.'));
      return;
    }
    if (!code || !verifier) {
      return;
    }
    void run(async () => {
      const token = await exchangeCode(settings, code, verifier);
      try {
        return await signedPost<Status>(settings, 'connect', ids, token.access_token);
      } finally {
        await revoke(settings, token);
      }
    });
  }, [oauthContext?.code, oauthContext?.verifier, oauthContext?.error]);

  const disconnect = () => run(() => signedPost<Status>(settings, 'disconnect', ids));

  return (
    <SettingsPage>
      <Box css={{stack: 'y', gap: 'medium'}}>
        {error && (
          <Banner type="critical" title="CodeQR could not do that" description={error.message} />
        )}
        {status === null && busy && <Spinner />}
        {status?.connected === false && (
          <Box css={{stack: 'y', gap: 'small'}}>
            <Inline>
              This Stripe account is not linked to a CodeQR workspace. Sign in to CodeQR
              and pick a workspace on the Business plan or higher to attribute your
              revenue to your links.
            </Inline>
            <Button type="primary" href={authUrl} target="_blank" disabled={!authUrl || busy}>
              Connect a CodeQR workspace
            </Button>
          </Box>
        )}
        {status?.connected === true && (
          <Box css={{stack: 'y', gap: 'small'}}>
            <Inline>
              Linked to {status.workspace.name} ({status.workspace.slug}), {status.plan} plan
              {status.connected_since ? `, since ${status.connected_since.slice(0, 10)}` : ''}.
            </Inline>
            {status.tracking_active ? (
              <Badge type="positive">Conversion tracking is on</Badge>
            ) : (
              <Badge type="warning">Conversion tracking needs the Business plan</Badge>
            )}
            <Button type="destructive" onPress={disconnect} disabled={busy}>
              Disconnect
            </Button>
          </Box>
        )}
      </Box>
    </SettingsPage>
  );
};

export default SettingsView;
