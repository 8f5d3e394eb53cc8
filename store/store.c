/* placeholder */ typedef int shoal__placeholder_t;
