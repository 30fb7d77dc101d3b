export const CLI_NAME = "metergate";
