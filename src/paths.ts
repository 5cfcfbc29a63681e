// Where the project's own folders are, whether running from src/ (tests) or dist/ (built).
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = fileURLToPath(new URL('../', import.meta.url));
/** Git-ignored folder for development data (the embedded database). */
export const DEV_DATA_DIR = fileURLToPath(new URL('../.data/', import.meta.url));
